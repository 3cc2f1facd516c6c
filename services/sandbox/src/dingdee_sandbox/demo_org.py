"""The demo organisation both sandboxes and the example flows agree on.

DingTalk user ids, department ids and expense-type labels on one side; the Kingdee staff numbers,
department numbers and expense items they map to on the other. The DingTalk sandbox generates
approvals from it, the Kingdee sandbox seeds its base data from it, and ``config/flows.yaml``'s
reference tables are checked against it by a test.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEMO_APP",
    "DEPARTMENTS",
    "EMPLOYEES",
    "EXPENSE_TYPES",
    "ORG_NUMBER",
    "PROCESS_CODES",
    "DemoApp",
    "Department",
    "Employee",
    "demo_mobile",
]


@dataclass(frozen=True, slots=True)
class DemoApp:
    name: str
    app_key: str
    app_secret: str
    corp_id: str
    agent_id: int  # the app's AgentId: the sender of its work notifications


@dataclass(frozen=True, slots=True)
class Department:
    dingtalk_id: str
    name: str
    kingdee_number: str
    parent_dingtalk_id: str | None = None


@dataclass(frozen=True, slots=True)
class Employee:
    userid: str
    name: str
    dept_id: str
    staff_number: str


DEMO_APP = DemoApp(
    name="main",
    app_key="dingdemo0app0key0001",
    app_secret="demo-app-secret-0123456789abcdef",  # noqa: S106 - public demo value
    corp_id="ding0demo0corp",
    agent_id=3_140_000_001,
)

# process_code per example flow
PROCESS_CODES = {
    "petty-cash": "PROC-BYJ-7F3A2C91",  # 备用金补单
    "department-sync": "PROC-DEPT-5B8E1D04",  # 部门新建申请
}

ORG_NUMBER = "100"

DEPARTMENTS: tuple[Department, ...] = (
    Department("1", "总经办", "BM000001"),
    Department("582976341", "财务部", "BM000002", "1"),
    Department("582976342", "行政部", "BM000003", "1"),
    Department("582976343", "销售一部", "BM000004", "1"),
    Department("582976344", "销售二部", "BM000005", "1"),
    Department("582976345", "研发中心", "BM000006", "1"),
    Department("582976346", "华东分公司", "BM000007", "1"),
    Department("582976347", "采购部", "BM000008", "1"),
)

EMPLOYEES: tuple[Employee, ...] = (
    Employee("0123456789012345", "张伟", "582976341", "EMP0001"),
    Employee("0123456789012346", "王芳", "582976341", "EMP0002"),
    Employee("0123456789012347", "李娜", "582976342", "EMP0003"),
    Employee("0123456789012348", "刘洋", "582976343", "EMP0004"),
    Employee("0123456789012349", "陈静", "582976343", "EMP0005"),
    Employee("0123456789012350", "杨磊", "582976344", "EMP0006"),
    Employee("0123456789012351", "赵敏", "582976345", "EMP0007"),
    Employee("0123456789012352", "黄强", "582976345", "EMP0008"),
    Employee("0123456789012353", "周婷", "582976346", "EMP0009"),
    Employee("0123456789012354", "吴刚", "582976346", "EMP0010"),
    Employee("0123456789012355", "徐丽", "582976347", "EMP0011"),
    Employee("0123456789012356", "孙杰", "582976342", "EMP0012"),
)

# 费用类型 label in the DingTalk form → Kingdee expense item (费用项目) number
EXPENSE_TYPES: dict[str, str] = {
    "办公用品": "FYXM01",
    "差旅费": "FYXM02",
    "交通费": "FYXM03",
    "业务招待费": "FYXM04",
    "快递邮寄费": "FYXM05",
    "通讯费": "FYXM06",
    "会议费": "FYXM07",
    "维修费": "FYXM08",
}


def demo_mobile(emp: Employee) -> str:
    """The demo employee's mobile (both sandboxes agree): ``138`` + its staff-number digits as 8."""
    return "138" + "".join(ch for ch in emp.staff_number if ch.isdigit()).rjust(8, "0")
