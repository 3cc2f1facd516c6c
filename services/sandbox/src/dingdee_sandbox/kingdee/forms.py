"""Form metadata the sandbox validates against (contract §6): keys, captions, required, references.

Only the forms the demo flows write are described in full (``ER_ExpReimbursement``,
``BD_Department``); a Model key that is not listed is rejected as Kingdee does for unknown keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FORMS", "EntrySpec", "FieldSpec", "FormSpec"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    caption: str
    required: bool = False
    ref: str | None = None  # base-data kind; "contact" follows FCONTACTUNITTYPE


@dataclass(frozen=True, slots=True)
class EntrySpec:
    caption: str
    entity: str  # the entity name View uses for the rows
    fields: dict[str, FieldSpec]


@dataclass(frozen=True, slots=True)
class FormSpec:
    form_id: str
    caption: str
    pk: str
    number_field: str
    number_prefix: str
    fields: dict[str, FieldSpec]
    entries: dict[str, EntrySpec] = field(default_factory=dict)
    base_kind: str | None = None  # saved records become base data of this kind

    def field_keys(self) -> set[str]:
        """Every header key a query may name (upper-case), including the system fields."""
        keys = {k.upper() for k in self.fields}
        keys |= {self.pk.upper(), self.number_field.upper(), "FDOCUMENTSTATUS", "FFORBIDSTATUS"}
        for entry_key in self.entries:
            keys |= {f"{entry_key.upper()}_FENTRYID", f"{entry_key.upper()}_FSEQ"}
        return keys | set(self.entry_field_keys())

    def entry_field_keys(self) -> dict[str, str]:
        """Entry field keys a query may name (upper-case) → their entity key: kingdee.md §10.3,
        "entry fields are checked the same way" (by their own key); the entry id is only
        queryable as ``<entity>_FEntryID`` (§4.1), so it is not listed here."""
        return {
            key.upper(): entry_key
            for entry_key, entry in self.entries.items()
            for key in entry.fields
            if key.upper() != "FENTRYID"
        }


F = FieldSpec

_EXPENSE_ENTRY = EntrySpec(
    "费用明细",
    "ER_ExpenseReimbEntry",
    {
        "FEntryID": F("分录主键"),
        "FExpID": F("费用项目", True, "expense_items"),
        "FExpenseDeptEntryID": F("费用承担部门", True, "departments"),
        "FTaxSubmitAmt": F("费用金额"),
        "FExpSubmitAmount": F("核定报销金额"),
        "FRequestAmount": F("申请退/付款金额"),
        "FInvoiceType": F("发票类型"),
        "FTaxRate": F("税率"),
        "FTaxAmt": F("税额"),
        "FLOCTAXAMOUNT": F("税额本位币"),
        "FLOCNOTAXAMOUNT": F("不含税金额本位币"),
        "FOnlineBank": F("网银支付"),
        "FRemark": F("备注"),
    },
)

_EXPENSE = FormSpec(
    "ER_ExpReimbursement",
    "费用报销单",
    "FID",
    "FBillNo",
    "FYBX",
    {
        "FID": F("实体主键"),
        "FBillNo": F("单据编号"),
        "FBillTypeID": F("单据类型", True, "bill_types"),
        "FDate": F("申请日期", True),
        "FCurrencyID": F("币别", True, "currencies"),
        "FLocCurrencyID": F("本位币", True, "currencies"),
        "FExchangeTypeID": F("汇率类型", True, "rate_types"),
        "FExchangeRate": F("汇率"),
        "FOrgID": F("申请组织", True, "orgs"),
        "FProposerID": F("申请人", True, "staff"),
        "FRequestDeptID": F("申请部门", True, "departments"),
        "FExpenseOrgId": F("费用承担组织", True, "orgs"),
        "FExpenseDeptID": F("费用承担部门", True, "departments"),
        "FCONTACTUNITTYPE": F("往来单位类型", True),
        "FCONTACTUNIT": F("往来单位", True, "contact"),
        "FCausa": F("事由", True),
        "FRequestType": F("退款/付款"),
        "FPayOrgId": F("付款组织", False, "orgs"),
        "FPaySettlleTypeID": F("结算方式", False, "settle_types"),
        "FBankAccountNameT": F("收款账户名"),
        "FBankAccountT": F("收款账号"),
        "FBankBranchT": F("开户行"),
        "FCombinedPay": F("合并付款"),
        "FSplitEntry": F("拆分分录"),
        "FRealPay": F("实报实付"),
        "FOnlineBankShow": F("网银"),
        "FPayBox": F("付款"),
        "FrefundBox": F("退款"),
        "FExpAmountSum": F("费用金额汇总"),
        "FReqAmountSum": F("申请金额汇总"),
        "FLocExpAmountSum": F("费用金额本位币"),
        "FLocReqAmountSum": F("申请金额本位币"),
        "FReqReimbAmountSum": F("申请报销金额"),
        "FReqPayReFoundAmountSum": F("申请付退款金额"),
    },
    {"FEntity": _EXPENSE_ENTRY},
)

_DEPARTMENT = FormSpec(
    "BD_Department",
    "部门",
    "FDEPTID",
    "FNumber",
    "BM",
    {
        "FDEPTID": F("实体主键"),
        "FNumber": F("编码"),
        "FName": F("名称", True),
        "FCreateOrgId": F("创建组织", True, "orgs"),
        "FUseOrgId": F("使用组织", True, "orgs"),
        "FFullName": F("部门全称"),
        "FHelpCode": F("助记码"),
        "FParentID": F("上级部门", False, "departments"),
        "FDeptProperty": F("部门属性", False, "dept_properties"),
        "FGroup": F("部门分组", False, "dept_groups"),
        "FEffectDate": F("生效日期"),
        "FLapseDate": F("失效日期"),
        "FDescription": F("描述"),
        "FIsCopyFlush": F("倒冲"),
        "FIsDetailDpt": F("明细部门"),
        "FIsStock": F("库存部门"),
        "FIsHRDept": F("HR部门"),
        "FFinishQtyDepend": F("完工数量依据"),
        "FSHRMapEntity": F("s-HR映射"),
    },
    base_kind="departments",
)

FORMS: dict[str, FormSpec] = {f.form_id.upper(): f for f in (_EXPENSE, _DEPARTMENT)}

# FCONTACTUNITTYPE value → base-data kind FCONTACTUNIT must resolve in (others are not checked)
CONTACT_KINDS = {"BD_EMPINFO": "staff", "BD_DEPARTMENT": "departments"}
