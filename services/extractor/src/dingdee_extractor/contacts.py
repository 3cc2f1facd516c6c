"""DingTalk contacts as reference sources, read by the extractor (issue #14).

Each ``dingtalk`` source of ``flows.yaml`` is read through the extractor's client (the app's
token and token bucket; every call counted in ``dingdee_dingtalk_requests_total{api}``):
departments by a BFS over ``topapi/v2/department/listsub`` from the root (dingtalk.md §9.1.4;
the root itself with ``department/get``, §9.1.5), users with ``topapi/v2/user/list`` per
department, 100 a page (§9.1.3; a user in several departments is one row). Rows go to
``refdata.<source>`` (changed rows only, ``dingdee_common.refpublish``). Full reads run on the
source's schedule (``refresh_seconds``, default once a day: a full read costs about two calls
per department); a refresh request naming a user costs one ``user/get`` (§9.1.1), so a new
hire's claim brings their row in seconds. Contact calls are exempt from the monthly quota
(§9.1, lines 791–793) but pass the same per-app QPS limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from dingdee_common.checkpoints import latest_checkpoints
from dingdee_common.codec import encode_model
from dingdee_common.contracts.v1 import CallUsage, Checkpoint
from dingdee_common.errors import DingdeeError
from dingdee_common.kafka.clients import broker_unavailable, make_consumer
from dingdee_common.kafka.topics import Topics, provision
from dingdee_common.observability.logging import get_logger
from dingdee_common.quota import month_of
from dingdee_common.refdata import RefRow, SourceSpec, decode_request
from dingdee_common.refpublish import RefPublisher
from dingdee_common.retry import retry_transient
from dingdee_extractor.dingtalk.client import DingTalkClient
from dingdee_extractor.settings import ExtractorSettings

__all__ = ["ContactSync", "user_row"]

log = get_logger(__name__)
ROOT = 1
_PAGE = 100  # §9.1.3: TOP SDK validator 1…100
_NO_USER = {"60121", "33012", "60111"}  # §9.1.1: "no such active user"


def user_row(source: str, user: Mapping[str, Any], origin: str) -> RefRow:
    fields = {
        "userid": str(user.get("userid") or ""),
        "name": str(user.get("name") or ""),
        "job_number": str(user.get("job_number") or ""),
        "mobile": str(user.get("mobile") or ""),
        "dept_ids": ",".join(str(d) for d in user.get("dept_id_list") or []),
    }
    return RefRow(source=source, key=fields["userid"], fields=fields, origin=origin)


class ContactSync:
    """The extractor's task over its DingTalk contact sources."""

    def __init__(
        self,
        settings: ExtractorSettings,
        client: DingTalkClient,
        producer: AIOKafkaProducer,
        sources: Mapping[str, SourceSpec],
    ) -> None:
        self.s = settings
        self.client = client
        self.producer = producer
        self.sources = {n: s for n, s in sources.items() if s.dingtalk is not None}
        self.topics = Topics(settings.kafka.topic_prefix)
        self.publishers = {
            n: RefPublisher(settings.kafka, producer, n, self.topics.refdata(n))
            for n in self.sources
        }
        self.due = dict.fromkeys(self.sources, 0.0)
        self.last = dict.fromkeys(self.sources, -1e9)
        self.keys: dict[str, set[str]] = {n: set() for n in self.sources}
        self.leaving: dict[str, set[str]] = {n: set() for n in self.sources}
        self.wake = asyncio.Event()
        self.usage: dict[str, CallUsage] = {}  # app → this month's contact calls
        self._saved: dict[str, CallUsage] = {}

    async def _contacts(self, app: str, api: str, path: str, body: dict[str, Any]) -> Any:
        """One contacts call, counted in the app's month (``dingdee quota status``, exempt)."""
        now = int(time.time() * 1000)
        month = month_of(now)
        usage = self.usage.get(app)
        if usage is None or usage.month != month:
            usage = CallUsage(app=app, month=month, since_ms=now)
        self.usage[app] = usage.model_copy(update={"contact_calls": usage.contact_calls + 1})
        return await self.client.contacts(app, api, path, body)

    async def _load_usage(self) -> None:
        """This month's count so far, from the checkpoint record ``refdata:<app>``."""
        topic = self.topics.checkpoints
        for key, cp in (await latest_checkpoints(self.s.kafka, topic)).items():
            if key.startswith("refdata:") and cp.usage is not None:
                self.usage[cp.usage.app] = cp.usage

    async def _save_usage(self) -> None:
        for app, usage in self.usage.items():
            if self._saved.get(app) == usage:
                continue
            self._saved[app] = usage
            cp = Checkpoint(flow=f"refdata:{app}", watermark_ms=0, usage=usage)
            await self.producer.send_and_wait(
                self.topics.checkpoints, key=cp.flow.encode(), value=encode_model(cp)
            )

    def on_event(self, app: str, event_type: str, data: Mapping[str, Any]) -> None:
        """A contact event (dingtalk.md §9.2) of ``app``: joined or changed users are read with
        one ``user/get`` each, a user who left is removed, a department event re-reads the
        departments (a BFS of a few calls)."""
        users = event_type.startswith("user_")
        for name, spec in self.sources.items():
            if spec.dingtalk is None or spec.dingtalk.app != app:
                continue
            if users and spec.dingtalk.kind == "users":
                ids = [str(i) for i in data.get("userId") or []]
                target = self.leaving if event_type == "user_leave_org" else self.keys
                target[name].update(ids)
                self.wake.set()
            elif not users and spec.dingtalk.kind == "departments":
                self.due[name] = time.monotonic()
                self.wake.set()

    def _app(self, name: str) -> str:
        spec = self.sources[name].dingtalk
        return spec.app if spec is not None else ""

    async def run(self, stop: asyncio.Event) -> None:
        if not self.sources:
            return
        await provision(self.s.kafka, self.topics, extra=self.topics.refdata_specs(self.sources))
        requests = make_consumer(
            self.s.kafka, self.topics.refdata_requests, group_id="extractor.refdata"
        )
        await self._load_usage()
        listen = asyncio.create_task(self._listen(requests))
        try:
            while not stop.is_set():
                for name in list(self.sources):
                    for key in self._take_keys(name):
                        await self._one(name, key)
                    leaving, self.leaving[name] = self.leaving[name], set()
                    for key in leaving:
                        await self.publishers[name].remove(key)
                    if self.due[name] <= time.monotonic():
                        await self.refresh(name)
                await self._save_usage()
                self.wake.clear()
                wait = max(0.05, min(self.due.values()) - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=wait)
        finally:
            listen.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listen
            await requests.stop()

    def _take_keys(self, name: str) -> set[str]:
        keys, self.keys[name] = self.keys[name], set()
        return keys

    async def _listen(self, consumer: AIOKafkaConsumer) -> None:
        # started here, not before the first refresh: a group consumer's start waits for its
        # group (~15 s on Tansu), and the transformer waits for that first refresh (issue #14)
        await consumer.start()
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    with contextlib.suppress(ValueError):
                        request = decode_request(record.value or b"")
                        if request.source in self.sources:
                            self.request(request.source, request.key)
            if batches:
                await consumer.commit()

    def request(self, name: str, key: str = "") -> None:
        """One row (a user by userid) at once, or a full read no sooner than the minimum gap."""
        if key:
            self.keys[name].add(key)
        else:
            soonest = self.last[name] + self.s.refdata.min_interval_seconds
            self.due[name] = min(self.due[name], max(time.monotonic(), soonest))
        self.wake.set()

    async def _one(self, name: str, key: str) -> None:
        spec = self.sources[name].dingtalk
        if spec is None or spec.kind != "users":
            self.request(name)  # departments: a full read (a BFS of a few calls)
            return
        try:
            body = await self._contacts(
                spec.app, "user_get", "/topapi/v2/user/get", {"userid": key, "language": "zh_CN"}
            )
        except DingdeeError as exc:
            if any(c in str(getattr(exc, "code", "")) for c in _NO_USER):
                return  # not (yet) in DingTalk: the record waits, no retry storm
            log.warning("extractor.refdata.user_get_failed", source=name, error=str(exc)[:300])
            return
        try:
            await self.publishers[name].publish_one(
                user_row(name, body.get("result") or {}, "dingtalk user/get")
            )
        except KafkaError as exc:  # the broker away: the next miss or full read brings the row
            if not broker_unavailable(exc):
                raise
            log.warning("extractor.refdata.publish_failed", source=name, error=str(exc)[:300])

    async def refresh(self, name: str) -> None:
        started = time.monotonic()
        self.last[name] = started
        self.due[name] = started + self.sources[name].refresh_interval()
        try:
            rows = await retry_transient(lambda: self._read(name), self.s.retry)
            sent = await self.publishers[name].publish_all(
                rows, origin="extractor", took=time.monotonic() - started
            )
        except (DingdeeError, KafkaError) as exc:  # DingTalk or the broker away: read later
            if isinstance(exc, KafkaError) and not broker_unavailable(exc):
                raise
            self.due[name] = started + 60.0
            log.warning("extractor.refdata.refresh_failed", source=name, error=str(exc)[:300])
            return
        log.info("extractor.refdata.refreshed", source=name, rows=len(rows), changed=sent)

    async def _read(self, name: str) -> dict[str, RefRow]:
        spec = self.sources[name].dingtalk
        if spec is None:
            return {}
        depts = await self._departments(spec.app)
        if spec.kind == "departments":
            return {
                str(d["dept_id"]): RefRow(
                    source=name,
                    key=str(d["dept_id"]),
                    fields={
                        "dept_id": str(d["dept_id"]),
                        "name": str(d.get("name") or ""),
                        "parent_id": str(d.get("parent_id") or ""),
                        "code": str(d.get("code") or ""),
                        "name_path": _path(d, depts),
                    },
                    origin="dingtalk department/listsub",
                )
                for d in depts.values()
            }
        rows: dict[str, RefRow] = {}
        for dept_id in depts:
            cursor: int | None = 0
            while cursor is not None:
                body = await self._contacts(
                    spec.app,
                    "user_list",
                    "/topapi/v2/user/list",
                    {"dept_id": dept_id, "cursor": cursor, "size": _PAGE},
                )
                result = body.get("result") or {}
                for user in result.get("list") or []:
                    row = user_row(name, user, "dingtalk user/list")
                    rows[row.key] = row
                more = result.get("has_more") and result.get("next_cursor") is not None
                cursor = int(result["next_cursor"]) if more else None
        return rows

    async def _departments(self, app: str) -> dict[int, dict[str, Any]]:
        root = await self._contacts(
            app, "department_get", "/topapi/v2/department/get", {"dept_id": ROOT}
        )
        found: dict[int, dict[str, Any]] = {ROOT: dict(root.get("result") or {"dept_id": ROOT})}
        queue = [ROOT]
        while queue:
            parent = queue.pop(0)
            body = await self._contacts(
                app, "department_listsub", "/topapi/v2/department/listsub", {"dept_id": parent}
            )
            for child in body.get("result") or []:
                found[int(child["dept_id"])] = dict(child)
                queue.append(int(child["dept_id"]))
        return found


def _path(dept: Mapping[str, Any], depts: Mapping[int, Mapping[str, Any]]) -> str:
    """总经办/财务部: names from the root down (§9.1.5: no full-path field, built from parents)."""
    names: list[str] = []
    seen: set[int] = set()
    current: Mapping[str, Any] | None = dept
    while current is not None and int(current["dept_id"]) not in seen:
        seen.add(int(current["dept_id"]))
        names.append(str(current.get("name") or ""))
        parent = current.get("parent_id")
        current = depts.get(int(parent)) if parent not in (None, "", 0) else None
    return "/".join(reversed(names))
