"""Deterministic demo approvals in DingTalk's read format (contract §3.4)."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from dingdee_sandbox.demo_org import DEPARTMENTS, EMPLOYEES, EXPENSE_TYPES, PROCESS_CODES
from dingdee_sandbox.dingtalk.files import DemoFile, demo_files

__all__ = [
    "COLUMNS",
    "DEPT",
    "PETTY",
    "Instance",
    "department_form",
    "instance_id",
    "originator",
    "petty_cash_form",
    "upper_amount",
]

_ITEMS = {
    "办公用品": ["打印纸", "墨盒", "文件夹", "签字笔"],
    "差旅费": ["高铁票", "酒店住宿", "出差补贴"],
    "交通费": ["出租车费", "地铁充值", "停车费"],
    "业务招待费": ["客户午餐", "商务宴请"],
    "快递邮寄费": ["顺丰快递", "合同邮寄"],
    "通讯费": ["话费充值", "宽带续费"],
    "会议费": ["会议室租赁", "茶歇"],
    "维修费": ["空调维修", "电脑维修"],
}


@dataclass
class Instance:
    id: str
    process_code: str
    create_ms: int
    business_id: str
    originator: str
    dept_id: str
    title: str
    form: list[dict[str, Any]]
    status: str = "RUNNING"
    result: str = ""
    finish_ms: int | None = None
    biz_action: str = "NONE"
    attached: list[str] = field(default_factory=list)
    main_id: str | None = None
    approver: str = ""
    task_id: str = ""
    remarks: list[dict[str, Any]] = field(default_factory=list)  # ADD_REMARK records (§9.4.1)


def instance_id(rng: random.Random, create_ms: int) -> str:
    """36 chars: 22 url-safe + 4 digits + 10-digit creation epoch seconds (contract §6.10)."""
    alphabet = string.ascii_letters + string.digits
    head = "".join(rng.choice(alphabet) for _ in range(22))
    return f"{head}{rng.randint(0, 9999):04d}{create_ms // 1000:010d}"


def _comp(kind: str, cid: str, name: str, value: str, ext: Any = None) -> dict[str, Any]:
    comp = {"component_type": kind, "id": cid, "name": name, "value": value}
    if ext is not None:
        comp["ext_value"] = ext if isinstance(ext, str) else orjson.dumps(ext).decode()
    return comp


_PAYMENTS = ["现金", "银行转账"]
_PROPERTIES = ["管理部门", "销售部门", "研发部门", "生产部门"]


def _select(cid: str, name: str, label: str, options: list[str]) -> dict[str, Any]:
    ext = {"label": label, "key": f"option_{options.index(label)}"}
    return _comp("DDSelectField", cid, name, label, ext)


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"


_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_UNITS = ("", "拾", "佰", "仟")
_SECTIONS = ("", "万", "亿")


def _section(n: int) -> str:
    out, zero = "", False
    for i in range(3, -1, -1):
        d = n // 10**i % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out, zero = out + "零", False
        out += _DIGITS[d] + _UNITS[i]
    return out


def _integer(n: int) -> str:
    sections: list[int] = []
    while n:
        sections.append(n % 10000)
        n //= 10000
    out, gap = "", False
    for idx in range(len(sections) - 1, -1, -1):
        part = sections[idx]
        if part == 0:
            gap = bool(out)
            continue
        if out and (gap or part < 1000):
            out += "零"
        out, gap = out + _section(part) + _SECTIONS[idx], False
    return out


def upper_amount(amount: Decimal) -> str:
    """The uppercase Chinese amount of a MoneyField's ``ext_value`` ("壹仟伍佰叁拾陆元伍角")."""
    cents = int((amount * 100).to_integral_value())
    yuan, jiao, fen = cents // 100, cents // 10 % 10, cents % 10
    text = f"{_integer(yuan)}元" if yuan else ""
    if jiao == 0 and fen == 0:
        return (text or "零元") + "整"
    if jiao:
        text += _DIGITS[jiao] + "角"
    elif yuan:
        text += "零"
    return text + (_DIGITS[fen] + "分" if fen else "")


COLUMNS = (
    ("TextField", "TextField_BYJ061", "项目"),
    ("DDSelectField", "DDSelectField_BYJ062", "费用类型"),
    ("MoneyField", "MoneyField_BYJ063", "金额"),
    ("DDDateField", "DDDateField_BYJ064", "日期"),
    # dingtalk.md §9.3: attachments can sit inside TableField rows (value as §3.4)
    ("DDAttachment", "DDAttachment_BYJ065", "票据"),
)


def _column_definitions() -> str:
    """The empty-table quirk: a TableField without rows reads as its column definitions."""
    columns = [
        {
            "componentName": kind,
            "componentType": kind,
            "props": {
                "id": cid,
                "label": label,
                "placeholder": "请输入",
                "required": kind != "DDAttachment",
            },
        }
        for kind, cid, label in COLUMNS
    ]
    return orjson.dumps(columns).decode()


def _row(rng: random.Random, labels: list[str], n: int, day: str) -> dict[str, Any]:
    """One 费用明细 row in read format (cells in ``COLUMNS`` order)."""
    row_kind = rng.choice(labels)
    amount = _money(Decimal(rng.randint(2000, 200000)) / 100)
    values = (rng.choice(_ITEMS[row_kind]), row_kind, amount, day, _row_files(rng, n))
    cells = [
        {"componentType": kind, "label": label, "value": value, "key": key}
        for (kind, key, label), value in zip(COLUMNS, values, strict=True)
    ]
    return {"rowValue": cells, "rowNumber": f"TableField_BYJ06_{n + 1:04d}"}


def _row_files(rng: random.Random, n: int) -> str:
    """A row's 票据 cell: one receipt (jpg or pdf) in about one row of four, else ``"null"``.

    Drawn from a generator seeded by ``rng``'s state, which is left as it was: adding the cell
    shifts no other demo value (dingtalk.md §9.3: files inside ``TableField`` rows; §3.4 value).
    """
    sub = random.Random(repr(rng.getstate()))
    if sub.random() >= 0.25:
        return "null"
    kind = sub.choice(("jpg", "pdf"))
    size, file_id = sub.randint(20_000, 400_000), str(sub.randint(10**10, 10**11))
    return orjson.dumps([DemoFile(file_id, f"票据{n + 1}.{kind}", size, kind).as_value()]).decode()


def _attachment(rng: random.Random) -> str:
    """A DDAttachment value: a JSON array (in a string) of 1–3 files (dingtalk.md §3.4, §9.3)."""
    size, first_id = rng.randint(20000, 900000), rng.randint(10**10, 10**11)
    return orjson.dumps([f.as_value() for f in demo_files(first_id, size)]).decode()


def petty_cash_form(
    rng: random.Random, day: str, handler: tuple[str, str], rows_wanted: int | None = None
) -> list[dict[str, Any]]:
    """备用金补单: header fields plus a 费用明细 table of 1–4 rows (or ``rows_wanted``).

    Zero rows produce the empty-table quirk (column definitions, no ``ext_value``).
    """
    labels = list(EXPENSE_TYPES)
    kind = rng.choice(labels)
    count = rng.randint(1, 4) if rows_wanted is None else rows_wanted
    rows = [_row(rng, labels, n, day) for n in range(count)]
    total = sum((Decimal(r["rowValue"][2]["value"]) for r in rows), Decimal(0))
    attachments = _attachment(rng) if rng.random() < 0.6 else "null"
    return [
        _comp(
            "TextField",
            "TextField_BYJ01",
            "补单事由",
            f"{day[5:7]}月{rng.choice(DEPARTMENTS).name}备用金补充",
        ),
        _comp(
            "DDSelectField",
            "DDSelectField_BYJ02",
            "费用类型",
            kind,
            {"label": kind, "key": f"option_{labels.index(kind)}"},
        ),
        _comp(
            "MoneyField",
            "MoneyField_BYJ03",
            "补充金额（元）",
            _money(total),
            {"upper": upper_amount(total), "componentName": "MoneyField"},
        ),
        _comp("DDDateField", "DDDateField_BYJ04", "发生日期", day),
        _select("DDSelectField_BYJ05", "支付方式", rng.choice(_PAYMENTS), _PAYMENTS),
        _comp(
            "TableField",
            "TableField_BYJ06",
            "费用明细",
            orjson.dumps(rows).decode() if rows else _column_definitions(),
            {"statValue": [], "componentName": "TableField"} if rows else None,
        ),
        _comp(
            "TextareaField",
            "TextareaField_BYJ07",
            "备注",
            rng.choice(["null", "请尽快审批", "补充本月备用金"]),
        ),
        _comp("DDAttachment", "DDAttachment_BYJ08", "附件", attachments),
        _comp(
            "InnerContactField",
            "InnerContactField_BYJ09",
            "经办人",
            handler[1],
            [{"emplId": handler[0], "name": handler[1], "avatar": ""}],
        ),
    ]


def department_form(rng: random.Random, day: str, number: str) -> list[dict[str, Any]]:
    """部门新建申请."""
    parent = rng.choice(DEPARTMENTS)
    prop = rng.choice(_PROPERTIES)
    region = rng.choice(["华南", "华北", "西南", "华中", "东北"])
    name = f"{region}{rng.choice(['分公司', '办事处', '服务中心'])}{number[-3:]}"
    return [
        _comp("TextField", "TextField_DEP01", "部门名称", name),
        _comp("TextField", "TextField_DEP02", "部门编码", number),
        _select("DDSelectField_DEP03", "上级部门", parent.name, [d.name for d in DEPARTMENTS]),
        _select("DDSelectField_DEP04", "部门属性", prop, _PROPERTIES),
        _comp("DDDateField", "DDDateField_DEP05", "生效日期", day),
        _comp("TextareaField", "TextareaField_DEP06", "描述", rng.choice(["null", "业务扩展需要"])),
    ]


def originator(rng: random.Random) -> tuple[str, str, str]:
    e = rng.choice(EMPLOYEES)
    return e.userid, e.name, e.dept_id


PETTY, DEPT = PROCESS_CODES["petty-cash"], PROCESS_CODES["department-sync"]
