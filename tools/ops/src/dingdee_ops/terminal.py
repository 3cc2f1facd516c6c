"""Untrusted text made fit for an operator's terminal: one helper that every CLI command uses.

Keys, headers, values, error texts and Kingdee/DingTalk ids come from records that anyone who can
produce to a topic (or type into an approval form) controls. Printed raw they could recolour or
clear the screen (``ESC [ 2 J``), hide text (``\\x00``, bidi overrides such as U+202E), or, through
rich, be read as markup (``[red]``). :func:`safe` returns a rich :class:`~rich.text.Text`, which is
never parsed as markup, with every such character shown as a visible escape (``\\x1b``,
``\\u202e``) and long values cut to a limit the caller chooses.
"""

from __future__ import annotations

import re

from rich.text import Text

__all__ = ["BODY_LIMIT", "FIELD_LIMIT", "plain", "safe"]

FIELD_LIMIT = 200  # characters of one key, header or table cell
BODY_LIMIT = 4000  # characters of a message body in `dlq inspect` (without --full)

# C0 controls and DEL, C1 controls, bidi embeddings/overrides/isolates and marks, line and
# paragraph separators, the BOM / zero-width no-break space; newline only in single-line text.
_INVISIBLE = "\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb"
_ONE_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_INVISIBLE}]")
_MULTI_LINE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_INVISIBLE}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(
    value: str | bytes | None,
    *,
    limit: int | None = FIELD_LIMIT,
    multiline: bool = False,
    hint: str = "",
) -> str:
    """``value`` as printable text: controls escaped, cut after ``limit`` characters.

    Bytes that are not UTF-8 show as ``\\xNN``. A cut value ends with a marker that gives the full
    length and ``hint`` (how to see the rest). ``multiline`` keeps newlines (message bodies).
    """
    if value is None:
        return ""
    text = value.decode("utf-8", errors="backslashreplace") if isinstance(value, bytes) else value
    cut = ""
    if limit is not None and len(text) > limit:
        cut = f"…〔已截断：共 {len(text)} 字符{'；' + hint if hint else ''}〕"
        text = text[:limit]
    pattern = _MULTI_LINE if multiline else _ONE_LINE
    return pattern.sub(_escape, text) + cut


def safe(
    value: str | bytes | None,
    *,
    limit: int | None = FIELD_LIMIT,
    multiline: bool = False,
    hint: str = "",
    style: str = "",
) -> Text:
    """:func:`plain` as a rich ``Text`` (literal: ``[red]`` stays ``[red]``) in ``style``."""
    return Text(plain(value, limit=limit, multiline=multiline, hint=hint), style=style)
