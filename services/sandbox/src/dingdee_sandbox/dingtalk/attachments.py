"""v1.0 approval-file download URLs, the byte endpoint behind them, comments, and their controls.

Contract ``/work/shared/docs/contracts/dingtalk.md``:

* ``POST /v1.0/workflow/processInstances/spaces/files/urls/download`` (§9.3.1, lines 976–1018):
  ``{"processInstanceId", "fileId", "withCommentAttatchment"}`` (sic) →
  ``{"result": {"spaceId": <number>, "fileId", "downloadUri"}, "success": true}``; the URL is
  valid 15 minutes (line 997); errors HTTP 400 ``{"code", "message", "requestid"}`` (line 1001).
* ``GET /_oss/{token}``: the pre-signed URL, fetched with a plain ``GET`` (line 996). Expired →
  403, missing object → 404, in OSS's XML error shape (the contract does not show these bodies:
  the shape is Aliyun OSS's, UNCONFIRMED for DingTalk). Streams in 64 KiB pieces; honours one
  ``Range: bytes=a-b`` (OSS does; the contract is silent) with 206 / 416.
* ``POST /v1.0/workflow/processInstances/comments`` (§9.4.1, lines 1035–1056) →
  ``{"result": true, "success": true}``; the comment becomes an ``ADD_REMARK`` operation record.

Control (JSON): ``GET /_sandbox/attachments/{instance_id}`` (files with size and sha256),
``POST /_sandbox/attachments/{instance_id}/files`` (add a file), ``GET|POST
/_sandbox/attachments/knobs``, ``POST /_sandbox/attachments/expire`` (expire every issued URL
now), ``GET /_sandbox/comments[?instance_id=]``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict
from typing import Any

import orjson
from aiohttp import web

from dingdee_sandbox.demo_org import EMPLOYEES
from dingdee_sandbox.dingtalk.files import DemoFile, file_bytes, file_sha256, files_of_form
from dingdee_sandbox.dingtalk.keys import API, APP, BODY, STATE
from dingdee_sandbox.dingtalk.responses import v1_error, v1_json
from dingdee_sandbox.dingtalk.state import State, cst
from dingdee_sandbox.dingtalk.v1host import _json_body, admitted
from dingdee_sandbox.jsonapi import json_body as _body
from dingdee_sandbox.jsonapi import json_response as _json

__all__ = ["attachment_routes"]

_PERMISSION = "Workflow.Instance.Write"  # dingtalk.md line 979 (download), line 1037 (comment)
_TEXT_MAX, _ATTACHMENTS_MAX = 1024, 20  # dingtalk.md lines 1042, 1045
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_OSS_CT = "application/xml"


async def _admitted_body(request: web.Request, api: str) -> web.Response | dict[str, Any]:
    """Admission (token, limits, the write permission), then the JSON body (logged)."""
    failure = await admitted(request, api) or _denied(request)
    if failure is not None:
        return failure
    body = await _json_body(request)
    request[BODY] = body
    return body


def _denied(request: web.Request) -> web.Response | None:
    """403 when the calling app lacks ``Workflow.Instance.Write`` (a write permission, even for
    a download: dingtalk.md line 979)."""
    if request.get(APP) in request.app[STATE].files.knobs.write_denied_apps:
        return v1_error(
            403,
            "Forbidden.AccessDenied.AccessTokenPermissionDenied",
            f"没有调用该接口的权限，接口权限申请参考：requiredScopes=[{_PERMISSION}]",
        )
    return None


def _find(state: State, instance_id: str, file_id: str, with_comments: bool) -> DemoFile | str:
    """The file, or the v1.0 error code explaining why not."""
    inst = state.instances[instance_id]
    form_file = next((f for f in files_of_form(inst.form) if f.file_id == file_id), None)
    if form_file is not None:
        return form_file
    comment_file = next(
        (f for f in state.files.comment_files.get(instance_id, []) if f.file_id == file_id), None
    )
    if comment_file is not None:
        # comment attachments answer noPermission unless the flag is sent (lines 1004–1006)
        return comment_file if with_comments else "noPermission"
    # a file that is not in this instance: the code is not documented (UNCONFIRMED)
    return "invalidFileId"


_MESSAGES = {
    "noPermission": "无访问权限",
    "invalidFileId": "文件id不合法",
    "userNotExist": "用户不存在",
}


def _download_target(state: State, body: dict[str, Any]) -> DemoFile | tuple[str, str]:
    """The file a ``urls/download`` body names, or its §9.3.1 error (code, message)."""
    pid, file_id = body.get("processInstanceId"), body.get("fileId")
    bad_pid = not isinstance(pid, str) or not pid
    if not isinstance(pid, str) or not pid or not isinstance(file_id, str) or not file_id:
        code = "invalidProcessInstanceId" if bad_pid else "invalidFileId"
        return code, "审批实例id不合法" if bad_pid else _MESSAGES["invalidFileId"]
    inst = state.instances.get(pid)
    if inst is None:
        return "processInstNotExist", "审批实例不存在"
    if inst.originator in state.files.knobs.departed_userids:  # lines 1008–1010
        return "userNotExist", "找不到该用户"
    found = _find(state, pid, file_id, body.get("withCommentAttatchment") is True)
    if isinstance(found, str):
        return found, _MESSAGES[found]
    if found.file_size == 0:  # "zero-byte files cannot be downloaded" (line 998; code UNCONFIRMED)
        return "invalidParameter", "文件大小为0，不支持下载"
    return found


async def download_url(request: web.Request) -> web.Response:
    """``POST …/spaces/files/urls/download`` (§9.3.1)."""
    body = await _admitted_body(request, "file_url_v1")
    if isinstance(body, web.Response):
        return body
    state = request.app[STATE]
    found = _download_target(state, body)
    if isinstance(found, tuple):
        return v1_error(400, *found)
    token = secrets.token_urlsafe(24)
    expiry = state.files.issue(token, body["processInstanceId"], found, state.now_ms())
    uri = f"{request.scheme}://{request.host}/_oss/{token}?Expires={expiry // 1000}"
    result = {"spaceId": int(found.space_id), "fileId": found.file_id, "downloadUri": uri}
    return v1_json({"result": result, "success": True})


def _oss_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{code}</Code>\n  <Message>{message}</Message>\n"
        f"  <RequestId>{secrets.token_hex(12).upper()}</RequestId>\n</Error>\n"
    )
    return web.Response(status=status, text=body, content_type=_OSS_CT)


def _range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end_exclusive)`` of one ``Range``, None without one, "bad" if unsatisfiable."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # unsupported forms (several ranges) are ignored: the whole file, 200
    first, last = match.groups()
    if not first:
        if not last or int(last) == 0:
            return "bad"
        return max(size - int(last), 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        return "bad"
    return start, end


async def serve_file(request: web.Request) -> web.StreamResponse:
    """``GET /_oss/{token}``: the bytes of an issued URL, streamed."""
    request[API] = "oss_get"
    state = request.app[STATE]
    issued = state.files.urls.get(request.match_info["token"])
    if issued is None:
        return _oss_error(403, "SignatureDoesNotMatch", "The request signature does not match.")
    _, file, expiry = issued
    if state.now_ms() >= expiry:
        return _oss_error(403, "AccessDenied", "Request has expired.")
    if file.file_id in state.files.knobs.missing_file_ids:
        return _oss_error(404, "NoSuchKey", "The specified key does not exist.")
    span = _range(request.headers.get("Range"), file.file_size)
    if span == "bad":
        return web.Response(
            status=416, headers={"Content-Range": f"bytes */{file.file_size}"}, text=""
        )
    start, end = span if isinstance(span, tuple) else (0, file.file_size)
    response = web.StreamResponse(status=206 if isinstance(span, tuple) else 200)
    response.content_type = "application/pdf" if file.file_type == "pdf" else "image/jpeg"
    if file.file_type == "png":
        response.content_type = "image/png"
    response.content_length = end - start
    response.headers["Accept-Ranges"] = "bytes"
    if isinstance(span, tuple):
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{file.file_size}"
    await response.prepare(request)
    for piece in file_bytes(state.seed, file, start, end):
        await response.write(piece)
    await response.write_eof()
    return response


def _comment_files(raw: Any) -> list[dict[str, Any]] | None:
    """``file.attachments[]`` (all strings, dingtalk.md line 1045), or None when malformed."""
    out = []
    for item in raw if isinstance(raw, list) else []:
        keys = ("spaceId", "fileSize", "fileId", "fileName", "fileType")
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in keys):
            return None
        if not item["fileSize"].isdigit():
            return None
        out.append(item)
    return out


def _comment_body_error(body: dict[str, Any]) -> tuple[str, str] | None:
    """The §9.4.1 parameter error (lines 1049–1050) of a comment body, else None."""
    pid, text, user = body.get("processInstanceId"), body.get("text"), body.get("commentUserId")
    file = body.get("file") or {}
    checks = [
        (isinstance(pid, str) and bool(pid), "invalidInstanceId", "审批实例id不合法"),
        (
            isinstance(text, str) and bool(text.strip()) and len(text) <= _TEXT_MAX,
            "invalidInstanceCommentText",
            f"评论内容不合法（1–{_TEXT_MAX}字）",
        ),
        (isinstance(user, str) and bool(user), "invalidInstanceCommentUserId", "评论人id不合法"),
        (
            isinstance(file, dict) and isinstance(file.get("photos") or [], list),
            "invalidParameter",
            "file 参数错误",
        ),
    ]
    failed = next(((code, msg) for ok, code, msg in checks if not ok), None)
    if failed is not None:
        return failed
    attachments = _comment_files(file.get("attachments"))
    if attachments is None or len(attachments) > _ATTACHMENTS_MAX:
        return "invalidParameter", f"附件参数错误（最多{_ATTACHMENTS_MAX}个）"
    return None


def _comment_error(state: State, body: dict[str, Any]) -> tuple[str, str] | None:
    """The first §9.4.1 error (lines 1049–1051) a comment body earns, else None."""
    failed = _comment_body_error(body)
    if failed is not None:
        return failed
    inst = state.instances.get(body["processInstanceId"])
    if inst is None:
        return "aflowProcessInstNotExist", "审批实例不存在"
    known = {e.userid for e in EMPLOYEES} - set(state.files.knobs.departed_userids)
    if body["commentUserId"] not in known:
        return "userNotExist", "用户不存在"
    if state.files.knobs.refuse_finished_comments and inst.status in ("COMPLETED", "TERMINATED"):
        return "aflowProcessInstCanNotBeExecuted", "审批状态异常，无法执行"
    return None


async def add_comment(request: web.Request) -> web.Response:
    """``POST /v1.0/workflow/processInstances/comments`` (§9.4.1)."""
    body = await _admitted_body(request, "comment_v1")
    if isinstance(body, web.Response):
        return body
    state = request.app[STATE]
    error = _comment_error(state, body)
    if error is not None:
        return v1_error(400, *error)
    pid, now = body["processInstanceId"], state.now_ms()
    file = body.get("file") or {}
    attachments = _comment_files(file.get("attachments")) or []
    state.files.comments.setdefault(pid, []).append(
        {
            "processInstanceId": pid,
            "text": body["text"],
            "commentUserId": body["commentUserId"],
            "photos": list(file.get("photos") or []),
            "attachments": attachments,
            "at_ms": now,
        }
    )
    files = [
        DemoFile(a["fileId"], a["fileName"], int(a["fileSize"]), a["fileType"], a["spaceId"])
        for a in attachments
    ]
    state.files.comment_files.setdefault(pid, []).extend(files)
    record: dict[str, Any] = {
        "userid": body["commentUserId"],
        "date": cst(now),
        "operation_type": "ADD_REMARK",
        "operation_result": "NONE",
        "remark": body["text"],
    }
    if files:  # old API: snake_case (dingtalk.md lines 970–972)
        record["attachments"] = [
            {
                "space_id": f.space_id,
                "file_id": f.file_id,
                "file_name": f.file_name,
                "file_size": f.file_size,
                "file_type": f.file_type,
            }
            for f in files
        ]
    state.instances[pid].remarks.append(record)
    return v1_json({"result": True, "success": True})


# ---- control ---------------------------------------------------------------------------------


def _file_json(state: State, file: DemoFile, comment: bool) -> dict[str, Any]:
    return {
        **file.as_value(),
        "sha256": file_sha256(state.seed, file),
        "in_comment": comment,
        "missing": file.file_id in state.files.knobs.missing_file_ids,
    }


async def instance_files(request: web.Request) -> web.Response:
    """Every file of an instance (form and comments) with its size and sha256."""
    state = request.app[STATE]
    pid = request.match_info["instance_id"]
    inst = state.instances.get(pid)
    if inst is None:
        raise web.HTTPNotFound(text="no such instance")
    rows = [_file_json(state, f, False) for f in files_of_form(inst.form)]
    rows += [_file_json(state, f, True) for f in state.files.comment_files.get(pid, [])]
    return _json({"instance_id": pid, "originator": inst.originator, "files": rows})


async def add_file(request: web.Request) -> web.Response:
    """Append a file ``{"fileName", "fileType", "fileSize"[, "fileId"]}`` to the instance's
    first ``DDAttachment`` component (a 50 MB file for a bench, a zero-byte file, …)."""
    state = request.app[STATE]
    inst = state.instances.get(request.match_info["instance_id"])
    if inst is None:
        raise web.HTTPNotFound(text="no such instance")
    body = await _body(request)
    comp = next((c for c in inst.form if c.get("component_type") == "DDAttachment"), None)
    if comp is None:
        raise web.HTTPConflict(text="the instance has no DDAttachment component")
    try:
        size = int(body["fileSize"])
        kind = str(body.get("fileType", "pdf"))
        file = DemoFile(
            str(body.get("fileId") or state.rng.randint(10**10, 10**11)),
            str(body.get("fileName") or f"附件.{kind}"),
            size,
            kind,
        )
    except (KeyError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"bad file: {exc}") from None
    if size < 0:
        raise web.HTTPBadRequest(text="fileSize must be >= 0")
    current = orjson.loads(comp["value"]) if comp["value"] not in ("", "null") else []
    comp["value"] = orjson.dumps([*current, file.as_value()]).decode()
    return _json({"file": file.as_value()})


async def knobs(request: web.Request) -> web.Response:
    """``GET`` the attachment knobs; ``POST`` a partial object to change them (400 if bad)."""
    files = request.app[STATE].files
    if request.method == "POST":
        try:
            files.knobs = files.knobs.patched(await _body(request))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
    return _json(asdict(files.knobs))


async def expire(request: web.Request) -> web.Response:
    """Expire every download URL issued so far (new ones live ``url_ttl_seconds``)."""
    state = request.app[STATE]
    return _json({"expired": state.files.expire_all(state.now_ms())})


async def comments(request: web.Request) -> web.Response:
    """Recorded comments, all or of ``?instance_id=``, in the order they were added."""
    recorded = request.app[STATE].files.comments
    pid = request.query.get("instance_id")
    rows = recorded.get(pid, []) if pid else [c for cs in recorded.values() for c in cs]
    return _json({"comments": rows})


def attachment_routes() -> list[web.RouteDef]:
    """The v1.0 calls, the byte endpoint and the control endpoints of this module."""
    return [
        web.post("/v1.0/workflow/processInstances/spaces/files/urls/download", download_url),
        web.post("/v1.0/workflow/processInstances/comments", add_comment),
        web.get("/_oss/{token}", serve_file),
        web.get("/_sandbox/attachments/knobs", knobs),
        web.post("/_sandbox/attachments/knobs", knobs),
        web.post("/_sandbox/attachments/expire", expire),
        web.get("/_sandbox/attachments/{instance_id}", instance_files),
        web.post("/_sandbox/attachments/{instance_id}/files", add_file),
        web.get("/_sandbox/comments", comments),
    ]
