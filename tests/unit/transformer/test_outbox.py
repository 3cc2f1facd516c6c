"""Bills are partitioned by key exactly as a plain aiokafka (or Java client) send would."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from dingdee_transformer.outbox import murmur2, partition_for


@settings(max_examples=500, deadline=None)
@given(key=st.binary(max_size=64))
def test_murmur2_is_kafkas(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=1, max_size=40), count=st.integers(1, 24))
def test_partition_is_the_default_partitioners(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_known_values() -> None:
    """The values of Kafka's own test (``UtilsTest.testMurmur2``), as signed Java ints."""

    def java_int(value: int) -> int:
        return value - (1 << 32) if value >= 1 << 31 else value

    assert java_int(murmur2(b"21")) == -973932308
    assert java_int(murmur2(b"foobar")) == -790332482
    assert java_int(murmur2(b"a-little-bit-long-string")) == -985981536
    assert java_int(murmur2(b"a-little-bit-longer-string")) == -1486304829
