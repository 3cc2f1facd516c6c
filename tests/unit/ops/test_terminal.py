"""Untrusted text reaches an operator's terminal escaped, literal and bounded."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from dingdee_ops.terminal import plain, safe


class TestPlain:
    @pytest.mark.parametrize(
        ("raw", "shown"),
        [
            ("petty\x1b[31m-cash", "petty\\x1b[31m-cash"),  # ANSI colour
            ("\x00\x07\x08\x7f", "\\x00\\x07\\x08\\x7f"),  # C0 and DEL
            ("a\x9b2Jb\x85", "a\\x9b2Jb\\x85"),  # C1: CSI and NEL
            ("invoice\u202egnp.exe", "invoice\\u202egnp.exe"),  # bidi override
            ("x\u2066y\u2069\u200f", "x\\u2066y\\u2069\\u200f"),  # bidi isolates, RLM
            ("line\u2028two\r\n", "line\\u2028two\\x0d\\x0a"),
            ("审批编号 [red]boom[/red]", "审批编号 [red]boom[/red]"),  # printable: unchanged
        ],
    )
    def test_controls_are_shown_as_escapes(self, raw: str, shown: str) -> None:
        assert plain(raw) == shown

    def test_bytes_that_are_not_utf8_show_as_hex(self) -> None:
        assert plain(b"ok \xff\xfe") == "ok \\xff\\xfe"

    def test_multiline_keeps_newlines_only(self) -> None:
        assert plain("a\nb\tc\x1b", multiline=True) == "a\nb\\x09c\\x1b"

    def test_long_values_are_cut_with_their_length_and_a_hint(self) -> None:
        out = plain("x" * 3_000_000, limit=10, hint="加 --full")
        assert out == "x" * 10 + "…〔已截断：共 3000000 字符；加 --full〕"
        assert plain("x" * 10, limit=10) == "x" * 10


def test_rich_prints_markup_literally() -> None:
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(safe("[red]x[/red] :smile: \x1b[2J"))
    assert buffer.getvalue() == "[red]x[/red] :smile: \\x1b[2J\n"
