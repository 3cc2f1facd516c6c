"""Bill attachments: ``AttachmentUpload`` (chunked), ``AttachmentDownLoad``, ``BOS_Attachment``.

Contract ``/work/shared/docs/contracts/kingdee.md`` §10.4 (lines 1311–1403) and §10.5 item 4:

* ``AttachmentUpload``/``AttachmentUpLoad`` (method names are case-insensitive, lines
  1318–1323): ``data`` = ``FileName``, ``FormId``, ``InterId``, ``BillNO`` (``BillNo`` too:
  keys are matched case-insensitively), ``IsLast``, ``SendByte`` (standard Base64 of this chunk,
  empty allowed), ``FileId`` (after the first chunk), ``Entrykey``, ``EntryinterId``,
  ``AliasFileName`` (table at lines 1329–1340). The bill must exist (``FormId`` + ``InterId`` +
  ``BillNO``). Chunks are appended in arrival order to a spool file (bounded memory); the last
  chunk (``IsLast: true``) creates one ``BOS_Attachment`` row whose id is returned in
  ``SuccessEntitys`` (lines 1355–1364). Answer ``{"Result": {"ResponseStatus", "FileId",
  "Message"}}``; a new ``FileId`` is 32 lower-case hex (line 1366).
* Chunk size: "files larger than 4 MB must be chunked" (line 1342): a decoded chunk over
  ``attachment_max_chunk_bytes`` (default 4 MiB) is refused.
* Failures: HTTP 200 with ``IsSuccess: false`` (line 1369; the texts are unknown, so the
  sandbox's are its own): missing field / bad Base64 / oversized chunk → MsgCode 8; unknown form
  → ``业务对象不存在``; bill not found → MsgCode 10; unknown ``FileId`` → MsgCode 10; a chunk
  after the last one, or naming another bill or file name than the first chunk → MsgCode 8.
  The contract carries no chunk index, so a reordering of two middle chunks is undetectable (on
  the real server too); "out of order" is what can be seen: a chunk after ``IsLast``.
* ``AttachmentDownLoad`` ``{"FileId", "StartIndex"}`` → 4 MiB ``FilePart``s with the *next*
  ``StartIndex``, ``IsLast``, ``FileSize``, ``FileName`` (lines 1371–1384).
* ``ExecuteBillQuery``/``BillQuery`` on ``BOS_Attachment`` (lines 1386–1403) with the fields
  listed there (``FATTACHMENTSIZE`` in KB with 2 decimals).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from aiohttp import web

from dingdee_sandbox.kingdee.envelope import as_bool, as_int, ci_get
from dingdee_sandbox.kingdee.forms import FORMS
from dingdee_sandbox.kingdee.query import MAX_LIMIT, QueryError, _Parser, _tokens
from dingdee_sandbox.kingdee.responses import failure_envelope, status_success
from dingdee_sandbox.kingdee.store import Store

__all__ = [
    "ATTACHMENT_METHODS",
    "AttachmentError",
    "AttachmentStore",
    "attachment_routes",
    "do_attachment",
    "is_attachment_query",
]

ATTACHMENT_METHODS = ("attachmentupload", "attachmentdownload")
PART = 4 << 20  # AttachmentDownLoad part size (line 1382: 4 MiB by inference)
FORM = "BOS_ATTACHMENT"


class AttachmentError(Exception):
    """A business failure: its message and MsgCode."""

    def __init__(self, message: str, msg_code: int) -> None:
        super().__init__(message)
        self.msg_code = msg_code


@dataclass
class Attachment:
    """One upload: in progress until its last chunk, then a ``BOS_Attachment`` row."""

    file_id: str
    file_name: str
    form_id: str
    inter_id: int
    bill_no: str
    alias: str
    entry_key: str
    entry_inter_id: int
    path: str
    size: int = 0
    chunks: int = 0
    sha: Any = field(default_factory=hashlib.sha256)
    id: int | None = None  # BOS_Attachment FID once complete
    created: str = ""

    def row(self) -> dict[str, Any]:
        """The ``BOS_Attachment`` fields (line 1389–1394), upper-case keys."""
        ext = os.path.splitext(self.file_name)[1]
        return {
            "FID": self.id,
            "FBILLTYPE": self.form_id,
            "FINTERID": str(self.inter_id),
            "FBILLNO": self.bill_no,
            "FENTRYKEY": self.entry_key,
            "FENTRYINTERID": str(self.entry_inter_id),
            "FFILEID": self.file_id,
            "FFILESTORAGE": "1",
            "FATTACHMENTNAME": self.file_name,
            "FEXTNAME": ext,
            "FATTACHMENTSIZE": round(self.size / 1024, 2),
            "FALIASFILENAME": self.alias,
            "FISALLOWDOWNLOAD": True,
            "FBILLSTATUS": "",
            "FCREATETIME": self.created,
        }

    def as_json(self) -> dict[str, Any]:
        """Control view: name, size (bytes), sha256, ids."""
        return {
            "id": self.id,
            "file_id": self.file_id,
            "file_name": self.file_name,
            "alias": self.alias,
            "size": self.size,
            "sha256": self.sha.hexdigest(),
            "chunks": self.chunks,
            "form_id": self.form_id,
            "inter_id": self.inter_id,
            "bill_no": self.bill_no,
            "entry_key": self.entry_key,
            "entry_inter_id": self.entry_inter_id,
        }


class AttachmentStore:
    """Uploads by ``FileId``; bytes in a spool directory removed with the store."""

    def __init__(self) -> None:
        self.by_file_id: dict[str, Attachment] = {}
        self._ids = itertools.count(100501)
        self.spool = tempfile.mkdtemp(prefix="kd-attachments-")
        weakref.finalize(self, shutil.rmtree, self.spool, True)

    def of_bill(
        self, form_id: str, inter_id: int | None = None, bill_no: str | None = None
    ) -> list[Attachment]:
        """Completed attachments of a bill, oldest first."""
        return [
            a
            for a in self.by_file_id.values()
            if a.id is not None
            and a.form_id.upper() == form_id.upper()
            and (inter_id is None or a.inter_id == inter_id)
            and (bill_no is None or a.bill_no == bill_no)
        ]

    def next_id(self) -> int:
        """The next ``BOS_Attachment`` id."""
        return next(self._ids)

    def completed(self) -> list[Attachment]:
        """Every completed attachment, by ``BOS_Attachment`` id."""
        return sorted((a for a in self.by_file_id.values() if a.id is not None), key=_fid)

    def read(self, attachment: Attachment, start: int, length: int) -> bytes:
        """``length`` bytes of the stored file from ``start``."""
        with open(attachment.path, "rb") as fh:
            fh.seek(start)
            return fh.read(length)


def _fid(a: Attachment) -> int:
    return a.id or 0


def _required(data: dict[str, Any], key: str) -> str:
    value = ci_get(data, key)
    if value is None or (isinstance(value, str) and not value.strip() and key != "SendByte"):
        raise AttachmentError(f"参数 {key} 不能为空", 8)
    return str(value)


def _decode(text: str, limit: int) -> bytes:
    try:
        chunk = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AttachmentError("SendByte 不是有效的 Base64 字符串", 8) from None
    if len(chunk) > limit:
        raise AttachmentError(f"单次上传的文件块不能超过 {limit} 字节，请分块上传", 8)
    return chunk


def _bill(store: Store, form_id: str, inter_id: str, bill_no: str) -> int:
    if form_id.upper() not in FORMS:
        raise AttachmentError("业务对象不存在", 9)
    try:
        fid = int(inter_id)
    except ValueError:
        raise AttachmentError(f"单据内码 {inter_id} 不合法", 8) from None
    record = store.find_id(form_id, fid)
    if record is None or record.number != bill_no:
        raise AttachmentError(f"单据不存在：{form_id} InterId={inter_id} BillNO={bill_no}", 10)
    return fid


def _target(files: AttachmentStore, store: Store, data: dict[str, Any]) -> Attachment:
    """The upload this chunk continues, or a new one (first chunk: no ``FileId``)."""
    name = _required(data, "FileName")
    form_id, inter_id = _required(data, "FormId"), _required(data, "InterId")
    bill_no = _required(data, "BillNO")
    fid = _bill(store, form_id, inter_id, bill_no)
    file_id = str(ci_get(data, "FileId") or "").strip()
    if not file_id:
        new_id = uuid.uuid4().hex
        entry_key = str(ci_get(data, "Entrykey") or " ")
        attachment = Attachment(
            new_id,
            name,
            FORMS[form_id.upper()].form_id,
            fid,
            bill_no,
            str(ci_get(data, "AliasFileName") or ""),
            entry_key,
            as_int(ci_get(data, "EntryinterId"), -1),
            os.path.join(files.spool, new_id),
        )
        files.by_file_id[new_id] = attachment
        return attachment
    existing = files.by_file_id.get(file_id)
    if existing is None:
        raise AttachmentError(f"FileId {file_id} 不存在或已过期", 10)
    attachment = existing
    if attachment.id is not None:
        raise AttachmentError(f"FileId {file_id} 的文件已上传完成（IsLast 之后的分块）", 8)
    if (attachment.file_name, attachment.inter_id, attachment.bill_no) != (name, fid, bill_no):
        raise AttachmentError(f"FileId {file_id} 属于另一个文件或单据", 8)
    return attachment


def upload(files: AttachmentStore, store: Store, data: Any, max_chunk: int) -> dict[str, Any]:
    """One ``AttachmentUpload`` call (§10.4.1).

    Raises:
        AttachmentError: a business failure (answered HTTP 200, ``IsSuccess: false``).
    """
    if not isinstance(data, dict):
        raise AttachmentError("缺少参数 data", 8)
    if ci_get(data, "IsLast") is None:
        raise AttachmentError("参数 IsLast 不能为空", 8)
    chunk = _decode(_required(data, "SendByte"), max_chunk)
    attachment = _target(files, store, data)
    with open(attachment.path, "ab") as fh:
        fh.write(chunk)
    attachment.size += len(chunk)
    attachment.chunks += 1
    attachment.sha.update(chunk)
    successes: list[dict[str, Any]] = []
    if as_bool(ci_get(data, "IsLast"), False):
        attachment.id = files.next_id()
        attachment.created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        successes = [{"Id": attachment.id, "Number": "", "DIndex": 0}]
    status = status_success(successes)
    return {"Result": {"ResponseStatus": status, "FileId": attachment.file_id, "Message": ""}}


def download(files: AttachmentStore, data: Any) -> dict[str, Any]:
    """One ``AttachmentDownLoad`` call (§10.4.2): the part at ``StartIndex``.

    Raises:
        AttachmentError: unknown or incomplete ``FileId``.
    """
    if not isinstance(data, dict):
        raise AttachmentError("缺少参数 data", 8)
    file_id = str(ci_get(data, "FileId") or "")
    attachment = files.by_file_id.get(file_id)
    if attachment is None or attachment.id is None:
        raise AttachmentError(f"FileId {file_id} 不存在", 10)
    start = max(as_int(ci_get(data, "StartIndex"), 0), 0)
    part = files.read(attachment, start, PART)
    return {
        "Result": {
            "ResponseStatus": status_success([]),
            "StartIndex": start + PART,
            "IsLast": start + PART >= attachment.size,
            "FileSize": attachment.size,
            "FileName": attachment.file_name,
            "FilePart": base64.b64encode(part).decode(),
            "Message": "",
        }
    }


def is_attachment_query(method: str, params: dict[str, Any]) -> bool:
    """An ``ExecuteBillQuery``/``BillQuery`` of ``BOS_Attachment`` (line 1395–1398)."""
    data = params.get("data")
    return (
        method in ("executebillquery", "billquery")
        and isinstance(data, dict)
        and str(ci_get(data, "FormId") or "").upper() == FORM
    )


def _getter(key: str) -> Callable[[Any], Any]:
    upper = key.strip().upper()
    if upper not in Attachment("", "", "", 0, "", "", "", 0, "").row():
        raise QueryError(f"元数据中标识为{key}的字段不存在")
    return lambda a: cast(Attachment, a).row()[upper]


def query(files: AttachmentStore, data: dict[str, Any], *, as_objects: bool) -> list[Any]:
    """Rows of ``BOS_Attachment`` (the filter language of ``query.py``).

    Raises:
        QueryError: an unknown field key or an unparsable ``FilterString``.
    """
    keys = [k.strip() for k in str(ci_get(data, "FieldKeys") or "").split(",") if k.strip()]
    getters = [_getter(k) for k in keys]
    rows: list[Any] = files.completed()
    raw_filter = str(ci_get(data, "FilterString") or "")
    if raw_filter.strip():
        predicate = _Parser(_tokens(raw_filter), _getter).parse()
        rows = [r for r in rows if predicate(r)]
    start = max(as_int(ci_get(data, "StartRow"), 0), 0)
    limit = min(as_int(ci_get(data, "Limit"), 0) or MAX_LIMIT, MAX_LIMIT)
    rows = rows[start : start + limit]
    if as_objects:
        return [{k: g(r) for k, g in zip(keys, getters, strict=True)} for r in rows]
    return [[g(r) for g in getters] for r in rows]


def do_attachment(method: str, params: dict[str, Any], state: Any) -> Any:
    """Dispatch one attachment call or ``BOS_Attachment`` query (``state``: the
    ``SandboxState``) to its answer payload."""
    files: AttachmentStore = state.attachments
    try:
        if method == "attachmentupload":
            max_chunk = state.config.attachment_max_chunk_bytes
            return upload(files, state.store, params.get("data"), max_chunk)
        if method == "attachmentdownload":
            return download(files, params.get("data"))
        return query(files, params["data"], as_objects=method == "billquery")
    except AttachmentError as exc:
        return failure_envelope(str(exc), exc.msg_code)
    except QueryError as exc:
        envelope = failure_envelope(str(exc), 9)
        return envelope if method == "billquery" else [[envelope]]


def attachment_routes(key: web.AppKey[Any]) -> list[web.RouteDef]:
    """``GET /_sandbox/attachments?form_id=&inter_id=|bill_no=``: a bill's completed attachments
    (name, size, sha256, ids); without a bill, every completed attachment."""

    async def listing(request: web.Request) -> web.Response:
        files: AttachmentStore = request.app[key].attachments
        form_id = request.query.get("form_id")
        inter = request.query.get("inter_id")
        if form_id:
            found = files.of_bill(
                form_id, int(inter) if inter else None, request.query.get("bill_no")
            )
        else:
            found = files.completed()
        body = orjson.dumps({"attachments": [a.as_json() for a in found]})
        return web.Response(body=body, content_type="application/json")

    return [web.get("/_sandbox/attachments", listing)]
