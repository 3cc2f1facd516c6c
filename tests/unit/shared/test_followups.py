"""``dingdee_common.followups``: flow declarations, file listing, refusals, comment texts."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from dingdee_common.contracts.v1 import FileRef
from dingdee_common.errors import FatalError
from dingdee_common.flows import FlowEntry, load_flows
from dingdee_common.followups import (
    AttachmentSpec,
    WritebackSpec,
    _may_name,
    files_in_form,
    followup_of,
    refusal,
)

ROOT = Path(__file__).resolve().parents[3]


def _file(file_id: str, name: str, size: int, kind: str) -> dict[str, object]:
    return {"spaceId": "1", "fileName": name, "fileSize": size, "fileType": kind, "fileId": file_id}


def _entry(**sections: object) -> FlowEntry:
    return FlowEntry.model_validate(
        {
            "id": "petty-cash",
            "dingtalk": {"app": "main", "process_code": "PROC-1"},
            "target": {"form_id": "ER_ExpReimbursement", "number_field": "FBillNo"},
            **sections,
        }
    )


class TestFilesInForm:
    def test_named_components_and_table_cells_each_file_once(self) -> None:
        top = [_file("1", "发票.pdf", 10, "pdf"), _file("2", "小票.jpg", 20, "jpg")]
        cell = orjson.dumps([_file("3", "a.png", 5, "png")]).decode()
        row = {"rowValue": [{"key": "附件", "componentType": "DDAttachment", "value": cell}]}

        def comp(kind: str, cid: str, name: str, value: object) -> dict[str, object]:
            return {
                "component_type": kind,
                "id": cid,
                "name": name,
                "value": orjson.dumps(value).decode(),
            }

        form = [
            comp("DDAttachment", "X", "附件", top),
            comp("DDAttachment", "Y", "其他", [_file("9", "z.pdf", 1, "pdf")]),
            comp("TableField", "T", "明细", [row]),
            comp("DDAttachment", "X2", "附件", top),
        ]
        files = files_in_form(form, ["附件"])
        assert [f.file_id for f in files] == ["1", "2", "3"]
        assert files[0] == FileRef(
            file_id="1", file_name="发票.pdf", file_size=10, file_type="pdf", space_id="1"
        )

    def test_a_table_cell_whose_name_is_json_escaped_is_still_found(self) -> None:
        cell = json.dumps([_file("3", "a.png", 5, "png")])
        rows = [{"rowValue": [{"key": "附件", "componentType": "DDAttachment", "value": cell}]}]
        escaped = json.dumps(rows, ensure_ascii=True)  # "\\u9644\\u4ef6", as some clients send
        assert "附件" not in escaped
        form = [{"component_type": "TableField", "id": "T", "name": "明细", "value": escaped}]
        assert [f.file_id for f in files_in_form(form, ["附件"])] == ["3"]

    def test_a_table_that_cannot_name_the_component_is_not_decoded(self) -> None:
        # not JSON at all: decoding it would find nothing either, but it is never tried
        form = [{"component_type": "TableField", "id": "T", "name": "明细", "value": "[{x"}]
        assert files_in_form(form, ["附件"]) == []
        assert not _may_name("[{x", {"附件"})
        assert _may_name('[{"key": "附件"}]', {"附件"})

    @pytest.mark.parametrize("value", ["null", "", "[]", "not json", None])
    def test_empty_or_broken_values_have_no_files(self, value: object) -> None:
        form = [{"component_type": "DDAttachment", "id": "X", "name": "附件", "value": value}]
        assert files_in_form(form, ["附件"]) == []


class TestRefusal:
    def test_type_and_size_say_what_to_do(self) -> None:
        spec = AttachmentSpec(components=["附件"], file_types=[".PDF", "jpg"], max_bytes=1_000_000)
        ok = FileRef(file_id="1", file_name="a.pdf", file_size=1_000_000, file_type="pdf")
        assert refusal(spec, ok) is None
        kind, text = refusal(spec, ok.model_copy(update={"file_type": "exe"})) or ("", "")
        assert kind == "attachment_type" and "file_types" in text
        big = ok.model_copy(update={"file_size": 1_000_001})
        kind, text = refusal(spec, big) or ("", "")
        assert kind == "attachment_too_large" and "max_bytes" in text and "replay" in text

    def test_no_limits_take_everything(self) -> None:
        spec = AttachmentSpec(components=["附件"])
        huge = FileRef(file_id="1", file_name="a.bin", file_size=10**10)
        assert refusal(spec, huge) is None


class TestWriteback:
    def test_texts_fill_their_placeholders_within_dingtalk_limit(self) -> None:
        spec = WritebackSpec(dead_lettered_text="未能生成{form_name}：{reason}")
        assert (
            spec.text("saved", form_name="费用报销单", number="BYJ1") == "已生成金蝶费用报销单 BYJ1"
        )
        long = spec.text("dead_lettered", form_name="单", reason="x" * 5000)
        assert long.startswith("未能生成单：x") and len(long) == 1024

    def test_unknown_placeholder_is_a_config_error_naming_the_flow(self) -> None:
        with pytest.raises(FatalError) as caught:
            followup_of(_entry(writeback={"saved_text": "{bill_id}"}))
        assert "petty-cash" in caught.value.message and "bill_id" in caught.value.message

    def test_flow_without_sections_has_no_followups(self) -> None:
        assert followup_of(_entry()) is None

    def test_the_petty_cash_example_declares_both(self) -> None:
        flows = load_flows(ROOT / "config" / "flows.yaml")
        specs = {e.id: followup_of(e) for e in flows.enabled()}
        petty = specs["petty-cash"]
        assert petty is not None and petty.attachments is not None and petty.writeback
        assert petty.attachments.components == ["附件", "票据"]
        assert petty.writeback.outcomes == ["saved", "dead_lettered"]
        assert petty.form_name == "费用报销单" and petty.number_field == "FBillNo"
        assert specs["department-sync"] is None
