"""The Kafka protocols describe aiokafka's own classes: every call they allow, aiokafka takes.

aiokafka ships no type information, so mypy cannot check ``AIOKafkaConsumer`` against
``BatchConsumer``; this test does it by signature. (mypy checks the fakes of
``tests/kafka_fakes.py`` against the same protocols.)
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from dingdee_common.kafka.protocols import BatchConsumer, Producer, RecordBatches, RecordSender
from tests.kafka_fakes import FakeConsumer, FakeProducer


def _members(protocol: type) -> dict[str, Any]:
    """The methods a protocol declares, its bases' included."""
    found: dict[str, Any] = {}
    for cls in reversed(protocol.__mro__):
        if cls is object or not getattr(cls, "_is_protocol", False):
            continue
        found.update({n: f for n, f in vars(cls).items() if inspect.isfunction(f) and n[0] != "_"})
    return found


def _call_of(method: Any) -> tuple[list[object], dict[str, object]]:
    """A call the protocol's signature allows: every named parameter given."""
    args: list[object] = []
    kwargs: dict[str, object] = {}
    for p in list(inspect.signature(method).parameters.values())[1:]:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            args.append(object())
        elif p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = object()
    return args, kwargs


CASES = [
    (BatchConsumer, AIOKafkaConsumer),
    (RecordSender, AIOKafkaProducer),
    (Producer, AIOKafkaProducer),
    (RecordBatches, AIOKafkaProducer),
    (BatchConsumer, FakeConsumer),
    (Producer, FakeProducer),
    (RecordBatches, FakeProducer),
]


@pytest.mark.parametrize(("protocol", "cls"), CASES, ids=lambda c: c.__name__)
def test_the_class_takes_every_call_the_protocol_allows(protocol: type, cls: type) -> None:
    members = _members(protocol)
    assert members, f"{protocol.__name__} declares no method"
    for name, declared in members.items():
        real = getattr(cls, name, None)
        assert real is not None, f"{cls.__name__} has no {name}"
        assert inspect.iscoroutinefunction(real) == inspect.iscoroutinefunction(declared), (
            f"{cls.__name__}.{name}: async on one side only"
        )
        args, kwargs = _call_of(declared)
        try:
            inspect.signature(real).bind(object(), *args, **kwargs)
        except TypeError as exc:
            pytest.fail(f"{cls.__name__}.{name} refuses {protocol.__name__}'s call: {exc}")


def test_a_protocol_call_aiokafka_refuses_is_caught() -> None:
    """The check above can fail: a keyword aiokafka's ``getmany`` does not know is refused."""

    def getmany(self: object, *, timeout_ms: int, max_records: int, wait: bool) -> None: ...

    args, kwargs = _call_of(getmany)
    with pytest.raises(TypeError):
        inspect.signature(AIOKafkaConsumer.getmany).bind(object(), *args, **kwargs)
