"""Schema version 1 of every topic's value (DESIGN §2)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from dingdee_common.outcomes import Outcome

__all__ = [
    "SCHEMA_VERSION",
    "ApprovalSnapshot",
    "AttachmentRefresh",
    "AttachmentResult",
    "AttachmentWork",
    "BillOutcome",
    "BillReady",
    "BillResult",
    "CallUsage",
    "Checkpoint",
    "EmittedInstance",
    "FileRef",
    "OpenInstance",
    "ReplayAudit",
    "SourceRef",
    "WritebackMark",
    "utcnow",
]

SCHEMA_VERSION: Literal[1] = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    exact_numbers: ClassVar[bool] = False
    """Read back with every JSON fraction as a Decimal (``codec.decode_model``), not a float."""

    schema_version: Literal[1] = SCHEMA_VERSION


class ApprovalSnapshot(_Message):
    """``approvals.raw``: one snapshot of a DingTalk approval instance, as DingTalk returned it.

    Keyed by ``process_instance_id``. ``instance`` is the ``process_instance`` object of
    ``topapi/processinstance/get`` unchanged (DingTalk's get response omits the id, so it is carried
    beside it).
    """

    flow: str
    process_code: str
    process_instance_id: str
    business_id: str | None = None
    status: str
    result: str | None = None
    biz_action: str = "NONE"
    fetched_at: datetime
    fingerprint: str
    trigger: Literal["poll", "event", "backfill", "sweep", "replay"] = "poll"
    instance: dict[str, Any]


class FileRef(BaseModel):
    """One file of an approval's attachment component (dingtalk.md §3.4, §9.3)."""

    model_config = ConfigDict(frozen=True)

    file_id: str
    file_name: str
    file_size: int
    file_type: str = ""
    space_id: str = ""


class SourceRef(BaseModel):
    """Where a bill came from, carried to the loader and into ``bills.result``.

    ``files`` are the files of the components the flow declares under ``attachments``
    (issue #18): the extractor's follow-up turns them into ``attachments.work`` items once the
    bill is saved. ``originator_userid`` lets a write-back comment be signed by the applicant.
    """

    model_config = ConfigDict(frozen=True)

    process_instance_id: str
    business_id: str | None = None
    fingerprint: str | None = None
    originator_userid: str | None = None
    files: list[FileRef] = Field(default_factory=list)


class BillReady(_Message):
    """``bills.ready``: one Kingdee document to save, keyed by its bill key (idempotency key).

    Amounts in ``model`` are Decimals, written as JSON numbers with their exact digits and read
    back as Decimals (``exact_numbers``), so the loader sends Kingdee the digits that were mapped.
    """

    exact_numbers: ClassVar[bool] = True

    flow: str
    bill_key: str
    form_id: str
    number_field: str = Field(
        default="FBillNo", description="the Model field holding bill_key (FNumber for base data)"
    )
    save_options: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any]
    source: SourceRef
    mapped_at: datetime = Field(default_factory=utcnow)


class BillOutcome(enum.StrEnum):
    """``bills.result``'s wire values: the loader's ``Outcome`` of a bill (dead letter: failed)."""

    SAVED = Outcome.SAVED.value
    ALREADY_EXISTS = Outcome.ALREADY_EXISTS.value
    FAILED = "failed"

    @classmethod
    def of(cls, outcome: Outcome) -> BillOutcome:
        """The wire value of a loader outcome (``dead_lettered`` is ``failed``)."""
        if outcome is Outcome.SAVED:
            return cls.SAVED
        if outcome is Outcome.ALREADY_EXISTS:
            return cls.ALREADY_EXISTS
        return cls.FAILED


class BillResult(_Message):
    """``bills.result``: the final outcome of one bill (audit trail, dashboards, reconciliation)."""

    flow: str
    bill_key: str
    form_id: str
    outcome: BillOutcome
    kingdee_id: int | None = None
    number: str | None = None
    message: str | None = None
    attempts: int = 1
    source: SourceRef
    loaded_at: datetime = Field(default_factory=utcnow)
    latency_seconds: float | None = None


class OpenInstance(BaseModel):
    """An unfinished instance the extractor keeps re-fetching until it reaches a terminal status."""

    model_config = ConfigDict(frozen=True)

    create_time_ms: int
    fingerprint: str | None = None
    next_check_ms: int = 0
    checks: int = 0
    failures: int = 0


class EmittedInstance(BaseModel):
    """A terminal instance already emitted; kept while its creation time is inside the sweep."""

    model_config = ConfigDict(frozen=True)

    fingerprint: str
    create_time_ms: int


class CallUsage(BaseModel):
    """Metered DingTalk calls one checkpoint key spent in one calendar month (CST).

    Every HTTP attempt of ``listids`` and ``get`` counts (retries too); token calls are exempt
    from the allowance and are not counted. Calls made after the last checkpoint of a killed
    process are lost from the count, so it can only under-count by one step.
    """

    model_config = ConfigDict(frozen=True)

    app: str
    month: str = Field(description="YYYY-MM in China Standard Time, DingTalk's metering month")
    since_ms: int = Field(description="when counting started in this month")
    list_calls: int = 0
    get_calls: int = 0
    cycles: int = Field(default=0, description="poll cycles finished in this month")
    contact_calls: int = Field(
        default=0,
        description="contacts calls of the reference sources (issue #14): exempt from the "
        "allowance (dingtalk.md §9.1), so not in ``calls``",
    )

    @property
    def calls(self) -> int:
        return self.list_calls + self.get_calls


class Checkpoint(_Message):
    """``extractor.checkpoints`` (compacted, keyed by flow id)."""

    flow: str
    watermark_ms: int
    open_instances: dict[str, OpenInstance] = Field(default_factory=dict)
    emitted: dict[str, EmittedInstance] = Field(default_factory=dict)
    last_sweep_ms: int = 0
    swept_until_ms: int = Field(
        default=0, description="creation times before this were re-listed by a sweep"
    )
    usage: CallUsage | None = None
    covered: list[tuple[int, int]] = Field(
        default_factory=list,
        description="events mode: [start, end] ms when the app's Stream was connected and every "
        "event acknowledged (creation times a gap could have hidden are listed, DESIGN §5)",
    )
    backfill_cursor_ms: int | None = None
    last_cycle_at: datetime = Field(default_factory=utcnow)


class ReplayAudit(_Message):
    """``dlq.replay.audit``: one record per replay run."""

    run_id: str
    who: str
    started_at: datetime
    finished_at: datetime | None = None
    dry_run: bool
    filters: dict[str, Any]
    counts: dict[str, int]
    outcome: str
    handled: dict[str, list[tuple[int, int]]] = Field(
        default_factory=dict,
        description="DLQ 'topic:partition' -> [first, last] offset ranges copied or parked",
    )


class AttachmentWork(_Message):
    """``attachments.work``: one file to attach to a saved bill (extractor → loader).

    Keyed by bill key. ``url`` is a fresh DingTalk download URL valid until ``url_expires_ms``;
    without one, ``refused`` says in plain words why the file cannot be moved (over the flow's
    size limit, a file type the flow does not take, the originator has left). The file's bytes
    never travel through Kafka: the loader streams them from ``url`` into Kingdee.
    """

    flow: str
    bill_key: str
    form_id: str
    number_field: str = "FBillNo"
    kingdee_id: int | None = None
    number: str
    app: str
    process_instance_id: str
    file: FileRef
    url: str | None = None
    url_expires_ms: int | None = None
    refused: str | None = None
    refused_type: str | None = None
    issued_at: datetime = Field(default_factory=utcnow)


class AttachmentRefresh(_Message):
    """``attachments.refresh``: the loader asks the extractor for a new URL (expired, or a
    replayed item without one); the extractor answers with a new ``attachments.work`` item."""

    work: AttachmentWork
    reason: str


class AttachmentResult(_Message):
    """``attachments.result``: what became of one file (audit, dashboards)."""

    flow: str
    bill_key: str
    number: str
    process_instance_id: str
    file_id: str
    file_name: str
    outcome: Literal["attached", "already_attached", "dead_lettered"]
    attachment_id: int | None = None
    bytes: int = 0
    message: str | None = None
    at: datetime = Field(default_factory=utcnow)


class WritebackMark(_Message):
    """``writeback.log`` (compacted, keyed ``<process_instance_id>:<outcome>``): a write-back
    comment (or work notification, ``channel``) about to be sent (``pending``) or sent
    (``done``) — the durable dedup. A notification's key ends in ``:notification``."""

    process_instance_id: str
    outcome: Literal["saved", "dead_lettered"]
    channel: Literal["comment", "notification"] = "comment"
    state: Literal["pending", "done", "failed"]
    text: str
    bill_key: str
    at: datetime = Field(default_factory=utcnow)
