"""The contacts directory (通讯录) the DingTalk sandbox serves: dingtalk.md §9.1, §9.6 item 1.

A department tree (root id ``1``, numeric ids) and users (string userids, 工号 ``job_number``,
mobiles, multi-department membership) seeded from the demo organisation, so the users agree with
the originators of the approvals the sandbox generates. Every change notifies ``listeners`` with
a §9.2 contact event type and its parsed ``data``; the Stream gateway turns them into frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from dingdee_sandbox.demo_org import DEPARTMENTS, EMPLOYEES, demo_mobile

__all__ = ["ContactKnobs", "ContactUser", "Dept", "Directory", "EventListener"]

EventListener = Callable[[str, dict[str, Any]], None]
ROOT = 1
# dingtalk.md line 836: dept_order_list "order" values exceed 2^53 in real responses
_ORDER_BASE = 176188733616559512
# §9.2 user_modify_org: the diffInfo prev/curr keys seen (dingtalk.md line 951)
_DIFF_KEYS = {
    "name": "name",
    "job_number": "jobNumber",
    "manager_userid": "managerUserid",
    "hired_date": "hiredDate",
    "telephone": "telephone",
    "email": "email",
    "work_place": "workPlace",
}


@dataclass
class ContactKnobs:
    """Contact-API options (``GET|POST /_sandbox/contacts/knobs``).

    Attributes:
        mobile_permission: the app holds 企业员工手机号信息: ``mobile``/``state_code`` are
            returned (dingtalk.md lines 804–807); otherwise they are omitted.
        email_permission: the app holds 邮箱等个人信息 (``email``, ``org_email``, ``work_place``,
            ``remark``, ``extension``).
        unknown_user_errcode: ``user/get`` of an unknown or departed userid: 60121 找不到该用户
            (captures) or 33012 无效的userId (the doc page), dingtalk.md lines 851–856.
        scope_dept_ids: the app's 通讯录授权范围 (a department covers its subtree); None = all.
            ``user/list`` outside → 50004, ``user/get`` of a user outside → 50002 (§9.1 table).
        metered: contact calls count against ``monthly_quota``. The contract lists them as
            exempt (dingtalk.md lines 791–793), so the default is False; the per-(app, API)
            QPS limit applies either way.
    """

    mobile_permission: bool = True
    email_permission: bool = True
    unknown_user_errcode: int = 60121
    scope_dept_ids: list[int] | None = None
    metered: bool = False

    def patched(self, changes: dict[str, Any]) -> ContactKnobs:
        """A copy with ``changes``; raises ValueError on an unknown knob or a bad value."""
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown knobs {sorted(unknown)}; known {sorted(names)}")
        merged = {**self.__dict__, **changes}
        if merged["unknown_user_errcode"] not in (60121, 33012):
            raise ValueError("unknown_user_errcode must be 60121 or 33012")
        scope = merged["scope_dept_ids"]
        if scope is not None:
            merged["scope_dept_ids"] = [int(d) for d in scope]
        return ContactKnobs(**merged)


@dataclass
class Dept:
    dept_id: int
    name: str
    parent_id: int | None
    order: int = 0
    code: str = ""  # 部门编码: only when maintained (§9.1.5)


@dataclass
class ContactUser:
    userid: str
    name: str
    dept_ids: list[int]
    job_number: str = ""
    mobile: str = ""
    title: str = ""
    email: str = ""
    hired_date: int | None = None
    manager_userid: str = ""
    leader_dept_ids: list[int] = field(default_factory=list)
    entry_seq: int = 0
    modified_seq: int = 0

    def view(self) -> dict[str, Any]:
        """The control API's row."""
        return {k: v for k, v in self.__dict__.items() if k not in ("entry_seq", "modified_seq")}


_USER_FIELDS = {f.name for f in fields(ContactUser)} - {"userid", "entry_seq", "modified_seq"}


@dataclass
class Directory:
    """Departments by id, users by userid, the knobs and the event listeners."""

    depts: dict[int, Dept] = field(default_factory=dict)
    users: dict[str, ContactUser] = field(default_factory=dict)
    knobs: ContactKnobs = field(default_factory=ContactKnobs)
    listeners: list[EventListener] = field(default_factory=list)
    _seq: int = 0

    @classmethod
    def demo(cls) -> Directory:
        """The demo organisation: 8 departments under root 1, the 12 employees."""
        d = cls()
        for n, dept in enumerate(DEPARTMENTS):
            parent = int(dept.parent_dingtalk_id) if dept.parent_dingtalk_id else None
            d.depts[int(dept.dingtalk_id)] = Dept(int(dept.dingtalk_id), dept.name, parent, n)
        for emp in EMPLOYEES:
            d._seq += 1
            d.users[emp.userid] = ContactUser(
                emp.userid,
                emp.name,
                [int(emp.dept_id)],
                job_number=emp.staff_number,
                mobile=demo_mobile(emp),
                entry_seq=d._seq,
                modified_seq=d._seq,
            )
        return d

    # ---- reads -------------------------------------------------------------------------------

    def in_scope(self, dept_id: int) -> bool:
        """Whether ``dept_id`` lies in the app's scope (a scope department covers its subtree)."""
        scope = self.knobs.scope_dept_ids
        seen: set[int] = set()
        current: int | None = dept_id
        while scope is not None and current is not None and current not in seen:
            if current in scope:
                return True
            seen.add(current)
            current = self.depts[current].parent_id if current in self.depts else None
        return scope is None

    def children(self, dept_id: int) -> list[Dept]:
        kids = [d for d in self.depts.values() if d.parent_id == dept_id]
        return sorted(kids, key=lambda d: (d.order, d.dept_id))

    def members(self, dept_id: int, order_field: str) -> list[ContactUser]:
        """Direct members of ``dept_id`` in ``order_field`` order (dingtalk.md line 876)."""
        rows = [u for u in self.users.values() if dept_id in u.dept_ids]
        key: Callable[[ContactUser], Any] = {
            "entry_asc": lambda u: u.entry_seq,
            "entry_desc": lambda u: -u.entry_seq,
            "modify_asc": lambda u: u.modified_seq,
            "modify_desc": lambda u: -u.modified_seq,
        }.get(order_field, lambda u: (self.dept_order(u, dept_id), u.userid))
        return sorted(rows, key=key)

    def dept_order(self, user: ContactUser, dept_id: int) -> int:
        return _ORDER_BASE + user.entry_seq * 1000 + dept_id % 1000

    # ---- changes (the control API) -----------------------------------------------------------

    def _emit(self, event_type: str, data: dict[str, Any]) -> None:
        if event_type.startswith("user_"):  # §9.2: user events carry a string timeStamp first
            data = {"timeStamp": str(int(time.time() * 1000)), **data}
        for listener in list(self.listeners):
            listener(event_type, data)

    def _check_depts(self, dept_ids: list[int]) -> None:
        missing = [d for d in dept_ids if d not in self.depts]
        if missing or not dept_ids:
            raise ValueError(f"unknown or no departments {missing}")

    def add_user(self, userid: str, **values: Any) -> ContactUser:
        """A new hire: ``user_add_org`` (§9.2). Raises ValueError (bad input, userid taken)."""
        if not userid or userid in self.users:
            raise ValueError(f"userid {userid!r} is empty or taken")
        unknown = set(values) - _USER_FIELDS
        if unknown or not values.get("name"):
            raise ValueError(f"name is required; unknown fields {sorted(unknown)}")
        values["dept_ids"] = [int(d) for d in values.get("dept_ids") or [ROOT]]
        self._check_depts(values["dept_ids"])
        self._seq += 1
        user = ContactUser(userid, entry_seq=self._seq, modified_seq=self._seq, **values)
        self.users[userid] = user
        self._emit("user_add_org", {"userId": [userid]})
        return user

    def change_user(self, userid: str, **values: Any) -> ContactUser:
        """An org-side edit: ``user_modify_org`` with ``diffInfo`` (§9.2). Raises KeyError,
        ValueError."""
        user = self.users[userid]
        unknown = set(values) - _USER_FIELDS
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        if "dept_ids" in values:
            values["dept_ids"] = [int(d) for d in values["dept_ids"]]
            self._check_depts(values["dept_ids"])
        prev = {_DIFF_KEYS[k]: getattr(user, k) for k in values if k in _DIFF_KEYS}
        for key, value in values.items():
            setattr(user, key, value)
        self._seq += 1
        user.modified_seq = self._seq
        curr = {_DIFF_KEYS[k]: getattr(user, k) for k in values if k in _DIFF_KEYS}
        diff = {"prev": prev, "curr": curr, "userid": userid}
        self._emit("user_modify_org", {"userId": [userid], "diffInfo": diff})
        return user

    def remove_user(self, userid: str) -> ContactUser:
        """The user leaves (离职): ``user_leave_org``; ``user/get`` then answers 60121."""
        user = self.users.pop(userid)
        self._emit("user_leave_org", {"userId": [userid]})
        return user

    def add_dept(
        self, name: str, parent_id: int, dept_id: int | None = None, code: str = ""
    ) -> Dept:
        """``org_dept_create``. Raises ValueError (unknown parent, id taken, no name)."""
        if not name or parent_id not in self.depts:
            raise ValueError(f"name is required and parent {parent_id} must exist")
        new_id = dept_id if dept_id is not None else max(self.depts) + 1
        if new_id in self.depts:
            raise ValueError(f"dept_id {new_id} is taken")
        dept = Dept(new_id, name, parent_id, len(self.depts), code)
        self.depts[new_id] = dept
        self._emit("org_dept_create", {"deptId": [new_id]})
        return dept

    def change_dept(self, dept_id: int, **values: Any) -> Dept:
        """``org_dept_modify`` (name, parent_id, code, order). Raises KeyError, ValueError."""
        dept = self.depts[dept_id]
        unknown = set(values) - {"name", "parent_id", "code", "order"}
        if unknown or ("parent_id" in values and values["parent_id"] not in self.depts):
            raise ValueError(f"unknown fields {sorted(unknown)} or parent")
        for key, value in values.items():
            setattr(dept, key, value)
        self._emit("org_dept_modify", {"deptId": [dept_id]})
        return dept

    def remove_dept(self, dept_id: int) -> Dept:
        """``org_dept_remove``; refused (ValueError) for the root or a department with members
        or sub-departments. Raises KeyError for an unknown id."""
        dept = self.depts[dept_id]
        if dept_id == ROOT or self.children(dept_id) or self.members(dept_id, "custom"):
            raise ValueError(f"department {dept_id} is the root or not empty")
        del self.depts[dept_id]
        self._emit("org_dept_remove", {"deptId": [dept_id]})
        return dept
