"""The transformer's faust consumer delivers nothing while it seeks to the committed offsets."""

from __future__ import annotations

import asyncio

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from dingdee_transformer.consumer import TransformerConsumer


def _consumer(*, active: bool) -> TransformerConsumer:
    consumer = object.__new__(TransformerConsumer)  # no broker: only the flow switches are used
    consumer.flow_active = active
    consumer.can_resume_flow = asyncio.Event()
    consumer.suspend_flow = asyncio.Event()
    (consumer.can_resume_flow if active else consumer.suspend_flow).set()
    return consumer


@pytest.mark.parametrize("active", [True, False])
async def test_perform_seek_stops_the_flow_while_seeking(
    monkeypatch: pytest.MonkeyPatch, active: bool
) -> None:
    seen: list[bool] = []

    async def seek(self: faust_aiokafka.Consumer) -> None:
        seen.append(self.flow_active)

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", seek)
    consumer = _consumer(active=active)
    await consumer.perform_seek()
    assert seen == [False], "records must not be delivered while the offsets are reset"
    assert consumer.flow_active is active, "the flow is left as it was found"


async def test_perform_seek_restores_the_flow_when_the_seek_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def seek(self: faust_aiokafka.Consumer) -> None:
        raise TimeoutError

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", seek)
    consumer = _consumer(active=True)
    with pytest.raises(TimeoutError):
        await consumer.perform_seek()
    assert consumer.flow_active
