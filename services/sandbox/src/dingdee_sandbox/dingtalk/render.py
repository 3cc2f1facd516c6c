"""An instance as the two hosts' ``get`` answers show it (contract §3.2–§3.6, §4.2).

Old host: snake_case, CST ``yyyy-MM-dd HH:mm:ss``, no instance id, ``finish_time`` only when
finished, ``result`` empty unless finished, task ids as strings. v1.0: camelCase, minute-precision
CST wall time printed with a ``Z``, numeric ``taskId``, ``mobileUrl``/``pcUrl``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dingdee_sandbox.demo_org import DEPARTMENTS
from dingdee_sandbox.dingtalk.files import v1_comment_attachments
from dingdee_sandbox.dingtalk.generator import Instance
from dingdee_sandbox.dingtalk.state import CST, cst

__all__ = ["render_old", "render_v1", "v1_time"]

_TASK_STATUS = {"COMPLETED": "COMPLETED", "TERMINATED": "CANCELED"}


def v1_time(ms: int) -> str:
    """v1.0 time string: CST wall time at minute precision, falsely marked ``Z`` (§4.2)."""
    return datetime.fromtimestamp(ms / 1000, CST).strftime("%Y-%m-%dT%H:%MZ")


def _url(inst: Instance, instance_id: str) -> str:
    return (
        f"aflow.dingtalk.com?procInsId={instance_id}&taskId={inst.task_id}"
        f"&businessId={inst.business_id}"
    )


def _records(inst: Instance) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [
        {
            "userid": inst.originator,
            "date": cst(inst.create_ms),
            "operation_type": "START_PROCESS_INSTANCE",
            "operation_result": "NONE",
        }
    ]
    if inst.finish_ms is None or inst.status in ("NEW", "RUNNING"):
        return records
    if inst.status == "TERMINATED":
        kind, actor, result, remark = "TERMINATE_PROCESS_INSTANCE", inst.originator, "NONE", "撤销"
    else:
        kind, actor = "EXECUTE_TASK_NORMAL", inst.approver
        result, remark = ("AGREE", "同意") if inst.result == "agree" else ("REFUSE", "不同意")
    records.append(
        {
            "userid": actor,
            "date": cst(inst.finish_ms),
            "operation_type": kind,
            "operation_result": result,
            "remark": remark,
        }
    )
    return records


def _task(inst: Instance, instance_id: str) -> dict[str, Any]:
    finished = inst.finish_ms is not None and inst.status not in ("NEW", "RUNNING")
    task: dict[str, Any] = {
        "userid": inst.approver,
        "task_status": _TASK_STATUS.get(inst.status, "RUNNING") if finished else "RUNNING",
        "task_result": inst.result.upper() if finished and inst.result else "NONE",
        "create_time": cst(inst.create_ms + 1000),
        "taskid": inst.task_id,
        "activity_id": "b39a_73fb",
        "url": _url(inst, instance_id),
    }
    if finished and inst.finish_ms is not None:
        task["finish_time"] = cst(inst.finish_ms)
    return task


def render_old(inst: Instance) -> dict[str, Any]:
    """The ``process_instance`` object of the old ``get`` (no id inside)."""
    dept = next((d for d in DEPARTMENTS if d.dingtalk_id == inst.dept_id), DEPARTMENTS[0])
    finished = inst.finish_ms is not None and inst.status not in ("NEW", "RUNNING")
    body: dict[str, Any] = {
        "title": inst.title,
        "create_time": cst(inst.create_ms),
        "originator_userid": inst.originator,
        "originator_dept_id": inst.dept_id,
        "originator_dept_name": dept.name,
        "status": inst.status,
        "result": inst.result if finished else "",
        "business_id": inst.business_id,
        "cc_userids": [],
        "approver_userids": [inst.approver],
        "biz_action": inst.biz_action,
        "attached_process_instance_ids": list(inst.attached),
        "form_component_values": inst.form,
        "operation_records": _records(inst) + inst.remarks,
        "tasks": [_task(inst, inst.id)],
    }
    if finished and inst.finish_ms is not None:
        body["finish_time"] = cst(inst.finish_ms)
    if inst.main_id:
        body["main_process_instance_id"] = inst.main_id
    return body


def _v1_time(text: str) -> str:
    return text[:16].replace(" ", "T") + "Z"


def _v1_form(component: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "componentType": component["component_type"],
        "id": component["id"],
        "name": component["name"],
        "value": component["value"],
        "bizAlias": "",
    }
    if "ext_value" in component:
        out["extValue"] = component["ext_value"]
    return out


def _v1_record(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "userId": record["userid"],
        "date": _v1_time(record["date"]),
        "type": record["operation_type"],
        "result": record["operation_result"],
        "remark": record.get("remark", ""),
        "showName": "发起人" if record["operation_type"] == "START_PROCESS_INSTANCE" else "审批人",
        "images": [],
        "attachments": v1_comment_attachments(record),
    }


def _v1_task(task: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "taskId": int(task["taskid"]),
        "userId": task["userid"],
        "status": task["task_status"],
        "result": task["task_result"],
        "createTime": _v1_time(task["create_time"]),
        "activityId": task["activity_id"],
        "mobileUrl": task["url"],
        "pcUrl": task["url"],
    }
    if "finish_time" in task:
        out["finishTime"] = _v1_time(task["finish_time"])
    return out


def render_v1(inst: Instance) -> dict[str, Any]:
    """The ``result`` object of v1.0 ``GET /v1.0/workflow/processInstances``."""
    old = render_old(inst)
    body: dict[str, Any] = {
        "title": old["title"],
        "createTime": v1_time(inst.create_ms),
        "originatorUserId": old["originator_userid"],
        "originatorDeptId": old["originator_dept_id"],
        "originatorDeptName": old["originator_dept_name"],
        "status": old["status"],
        "result": old["result"],
        "businessId": old["business_id"],
        "approverUserIds": old["approver_userids"],
        "ccUserIds": old["cc_userids"],
        "bizAction": old["biz_action"],
        "bizData": "{}",
        "attachedProcessInstanceIds": old["attached_process_instance_ids"],
        "formComponentValues": [_v1_form(c) for c in old["form_component_values"]],
        "operationRecords": [_v1_record(r) for r in old["operation_records"]],
        "tasks": [_v1_task(t) for t in old["tasks"]],
    }
    if "finish_time" in old and inst.finish_ms is not None:
        body["finishTime"] = v1_time(inst.finish_ms)
    if inst.main_id:
        body["mainProcessInstanceId"] = inst.main_id
    return body
