"""Approval attachments and comments: demo files, their seed-derived bytes, issued URLs, knobs.

Contract: ``/work/shared/docs/contracts/dingtalk.md`` §3.4 (the ``DDAttachment`` value) and §9.3,
§9.4, §9.6 items 3–4 (attachments, comments). No file is stored: a file's bytes are derived
block by block from ``(seed, fileId)`` on demand, so memory stays bounded whatever the sizes.
This module imports nothing of ``State`` (the state holds a ``FileStore``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

__all__ = [
    "BLOCK",
    "DemoFile",
    "FileStore",
    "demo_files",
    "file_bytes",
    "file_sha256",
    "files_of_form",
    "v1_comment_attachments",
]

BLOCK = 64 * 1024
# leading bytes of each type, so a downloaded file looks like what its name says
_MAGIC = {
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
    "jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
}
_NAMES = {"pdf": ("发票", "行程单", "报销单据"), "jpg": ("发票照片", "小票"), "png": ("截图",)}
SPACE_ID = "115770306"  # a string in the form value, a number in the download answer (§9.3.1)
LARGE = (5_300_000, 7_600_000)  # some demo files exceed 5 MB (issue #18 tests)


@dataclass(frozen=True, slots=True)
class DemoFile:
    """One file as a ``DDAttachment`` value lists it (dingtalk.md line 969: fileId, fileName,
    fileSize, fileType, spaceId)."""

    file_id: str
    file_name: str
    file_size: int
    file_type: str
    space_id: str = SPACE_ID

    def as_value(self) -> dict[str, Any]:
        """The read-format entry: ``spaceId``/``fileId`` strings, ``fileSize`` a number."""
        return {
            "spaceId": self.space_id,
            "fileName": self.file_name,
            "fileSize": self.file_size,
            "fileType": self.file_type,
            "fileId": self.file_id,
        }


def demo_files(first_id: int, first_size: int) -> list[DemoFile]:
    """1–3 files (PDFs and images, some over 5 MB) derived from the first file's drawn id.

    The caller's generator draws exactly the id and size it always drew, so adding files does
    not shift any other demo value.
    """
    sub = random.Random(f"attachments:{first_id}")
    out: list[DemoFile] = []
    for n in range(sub.choice((1, 1, 1, 2, 3))):
        kind = "pdf" if n == 0 else sub.choice(("pdf", "jpg", "png"))
        size = sub.randint(*LARGE) if sub.random() < 0.12 else (first_size if n == 0 else 0)
        size = size or sub.randint(20_000, 900_000)
        stem = sub.choice(_NAMES[kind])
        out.append(DemoFile(str(first_id + n), f"{stem}{n + 1 if n else ''}.{kind}", size, kind))
    return out


def _block(seed: int, file_id: str, file_type: str, index: int) -> bytes:
    data = random.Random(f"{seed}:{file_id}:{index}").randbytes(BLOCK)
    if index == 0:
        magic = _MAGIC.get(file_type, b"")
        data = magic + data[len(magic) :]
    return data


def file_bytes(
    seed: int, file: DemoFile, start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """The file's bytes ``[start, end)`` in pieces of at most ``BLOCK`` (deterministic)."""
    stop = file.file_size if end is None else min(end, file.file_size)
    pos = max(start, 0)
    while pos < stop:
        index, offset = divmod(pos, BLOCK)
        piece = _block(seed, file.file_id, file.file_type, index)[offset : offset + stop - pos]
        yield piece
        pos += len(piece)


def file_sha256(seed: int, file: DemoFile) -> str:
    """SHA-256 (hex) of the whole file, computed block by block."""
    digest = hashlib.sha256()
    for piece in file_bytes(seed, file):
        digest.update(piece)
    return digest.hexdigest()


def _parse(value: Any) -> list[DemoFile]:
    try:
        items = orjson.loads(value) if isinstance(value, str) else value
    except orjson.JSONDecodeError:
        return []
    if not isinstance(items, list):
        return []
    return [
        DemoFile(
            str(item["fileId"]),
            str(item.get("fileName", "")),
            int(item.get("fileSize") or 0),
            str(item.get("fileType", "")),
            str(item.get("spaceId", SPACE_ID)),
        )
        for item in items
        if isinstance(item, dict) and "fileId" in item
    ]


def files_of_form(form: list[dict[str, Any]]) -> list[DemoFile]:
    """Every file of a form: ``DDAttachment`` components and such cells in ``TableField`` rows
    (dingtalk.md lines 970–972: attachments can sit inside table rows — scan recursively)."""
    out: list[DemoFile] = []
    for comp in form:
        kind, value = comp.get("component_type"), comp.get("value")
        if kind == "DDAttachment":
            out.extend(_parse(value))
        elif kind == "TableField" and isinstance(value, str) and "rowValue" in value:
            for row in orjson.loads(value):
                for cell in row.get("rowValue", []) if isinstance(row, dict) else []:
                    if isinstance(cell, dict) and cell.get("componentType") == "DDAttachment":
                        out.extend(_parse(cell.get("value")))
    return out


def v1_comment_attachments(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A remark's attachments as v1.0 ``operationRecords[].attachments`` (camelCase plus
    ``spaceId``; the old API has snake_case ``file_id/file_name/file_size/file_type``,
    dingtalk.md lines 970–972)."""
    return [
        {
            "spaceId": a.get("space_id", SPACE_ID),
            "fileId": a["file_id"],
            "fileName": a["file_name"],
            "fileSize": a["file_size"],
            "fileType": a["file_type"],
        }
        for a in record.get("attachments", [])
    ]


@dataclass
class Knobs:
    """Attachment and comment knobs (``GET|POST /_sandbox/attachments/knobs``).

    Attributes:
        url_ttl_seconds: lifetime of a download URL (dingtalk.md line 997: 15 minutes; §9.6.3
            "expires after a configurable 15 min"); 0 issues URLs that are already expired.
        missing_file_ids: files whose bytes answer 404 on the byte endpoint.
        departed_userids: originators who have left: ``urls/download`` answers ``userNotExist``
            (dingtalk.md lines 1008–1010) and comments by them ``userNotExist`` (line 1050).
        write_denied_apps: app keys without ``Workflow.Instance.Write`` (lines 979, 1037): 403.
        refuse_finished_comments: a COMPLETED/TERMINATED instance refuses comments with
            ``aflowProcessInstCanNotBeExecuted`` (line 1051 UNCONFIRMED; §9.6.4 configurable).
    """

    url_ttl_seconds: float = 900.0
    missing_file_ids: list[str] = field(default_factory=list)
    departed_userids: list[str] = field(default_factory=list)
    write_denied_apps: list[str] = field(default_factory=list)
    refuse_finished_comments: bool = False

    def patched(self, changes: dict[str, Any]) -> Knobs:
        """A copy with ``changes``; raises ValueError on an unknown knob or a bad value."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown knobs {unknown}; known {sorted(known)}")
        try:
            knobs = Knobs(**{**asdict(self), **changes})
        except TypeError as exc:
            raise ValueError(str(exc)) from exc
        if float(knobs.url_ttl_seconds) < 0:
            raise ValueError("url_ttl_seconds must be >= 0")
        return knobs


@dataclass
class FileStore:
    """Issued download URLs, extra and comment files, recorded comments, knobs."""

    knobs: Knobs = field(default_factory=Knobs)
    # URL token → (instance id, file, expiry ms); pruned an hour after expiry (bounded memory)
    urls: dict[str, tuple[str, DemoFile, int]] = field(default_factory=dict)
    # instance id → files attached to its comments (downloadable only with the flag, §9.3.1)
    comment_files: dict[str, list[DemoFile]] = field(default_factory=dict)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def issue(self, token: str, instance_id: str, file: DemoFile, now_ms: int) -> int:
        """Record a URL; returns its expiry (ms)."""
        self.urls = {k: v for k, v in self.urls.items() if v[2] > now_ms - 3_600_000}
        expiry = now_ms + int(float(self.knobs.url_ttl_seconds) * 1000)
        self.urls[token] = (instance_id, file, expiry)
        return expiry

    def expire_all(self, now_ms: int) -> int:
        """Expire every issued URL now; returns how many were live."""
        live = 0
        for token, (iid, file, expiry) in list(self.urls.items()):
            if expiry > now_ms:
                live += 1
                self.urls[token] = (iid, file, now_ms)
        return live
