"""Value conversions of the mapping language: money, numbers, dates, booleans, text.

Each converter takes a raw value (usually a DingTalk string) and returns the Kingdee value, or
raises :class:`ConversionError` with a reason a finance-IT reader understands
(``'12,3a' is not a number``).

Money and decimals are :class:`~decimal.Decimal` from the text to the bytes Kingdee receives
(``codec.dumps`` writes a Decimal as a JSON number with its exact digits): never a float.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "ConversionError",
    "Converter",
    "converter",
    "to_bool",
    "to_datetime",
    "to_decimal",
]

FLOAT_DIGITS = 15
"""Significant digits a binary float holds exactly: any decimal of at most 15 digits survives
text → float → shortest text unchanged; with more, the float may be another number."""

_MONEY_NOISE = re.compile(r"[\s,，¥￥元]|^CNY|^RMB", re.IGNORECASE)
_MONEY_SHAPE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_GROUPED = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
_CURRENCY_NOISE = re.compile(r"[¥￥\s元]")
_CONTEXT_DIGITS = 28  # the decimal context's precision: quantize fails beyond it
_QUANTA = {places: Decimal(1).scaleb(-places) for places in range(11)}
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d")
_TRUE = {"true", "1", "yes", "y", "是", "on", "√"}
_FALSE = {"false", "0", "no", "n", "否", "off", ""}
KINGDEE_DATETIME = "%Y-%m-%d %H:%M:%S"


class ConversionError(ValueError):
    """A value does not fit the conversion its rule asks for."""


def to_decimal(raw: Any, *, precision: int | None, money: bool) -> Decimal:
    """``"1,234.50"``, ``"¥1234.5"`` or ``1234.5`` → ``Decimal('1234.50')`` at ``precision`` places.

    Money is never rounded: more places than ``precision`` is an error. Other decimals are rounded
    half-up (四舍五入, ``ROUND_HALF_UP``). A float (a JSON number some producer wrote where
    DingTalk writes text) is taken only while it is exact: at most :data:`FLOAT_DIGITS`
    significant digits once at ``precision`` places.

    Raises:
        ConversionError: the text is not a number (thousands separators must group by three), or
            a float beyond its exact digits, or a number too long to hold.
    """
    if isinstance(raw, bool):
        raise ConversionError(f"{raw!r} is not a number")
    if isinstance(raw, Decimal):
        text = format(raw, "f") if raw.is_finite() else "nan"
    elif isinstance(raw, int):
        text = str(raw)
    elif isinstance(raw, float):
        text = _float_text(raw, precision)
    else:
        text = str(raw).strip()
        if not _MONEY_SHAPE.match(text):  # plain "1234.50" needs no cleaning
            if "," in text and not _GROUPED.match(_CURRENCY_NOISE.sub("", text)):
                raise ConversionError(f"{raw!r} is not a number")
            text = _MONEY_NOISE.sub("", text) if money else text.replace(",", "")
    if not _MONEY_SHAPE.match(text):
        raise ConversionError(f"{raw!r} is not a number")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex already rules these out
        raise ConversionError(f"{raw!r} is not a number") from exc
    if precision is None:
        return value
    quantum = _QUANTA.get(precision) or Decimal(1).scaleb(-precision)
    try:
        rounded = value.quantize(quantum, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:  # more digits than the decimal context's 28
        raise ConversionError(f"{_short(raw)} has too many digits to be a number") from exc
    if money and value != rounded:
        raise ConversionError(f"{raw!r} has more than {precision} decimal places")
    return rounded


def _short(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else f"{text[:37]}…"


def _float_text(raw: float, precision: int | None) -> str:
    """A float's shortest text, if that is surely the number its producer wrote."""
    if not math.isfinite(raw):
        raise ConversionError(f"{raw!r} is not a number")
    value = Decimal(repr(raw))
    digits = value.adjusted() + 1 + (precision if precision is not None else 0)
    if len(value.as_tuple().digits) > FLOAT_DIGITS or digits > FLOAT_DIGITS:
        raise ConversionError(
            f"{raw!r} is a JSON number with more digits than a float holds exactly; "
            "amounts must be sent as text"
        )
    return format(value, "f")


def to_datetime(raw: Any, tz: ZoneInfo) -> datetime:
    """A DingTalk date/time (CST text, ISO with offset, or epoch ms) as naive local time in ``tz``.

    Raises:
        ConversionError: the value is not a date this converter recognises.
    """
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw / 1000, tz).replace(tzinfo=None)
    text = str(raw).strip()
    if len(text) == 13 and text.isdigit():  # epoch milliseconds, as DingTalk's v1.0 API sends
        return datetime.fromtimestamp(int(text) / 1000, tz).replace(tzinfo=None)
    if len(text) in (10, 16, 19) and text[4:5] == "-":
        try:  # the common DingTalk shapes, parsed in C
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConversionError(f"{raw!r} is not a date (expected yyyy-MM-dd[ HH:mm[:ss]])") from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(tz).replace(tzinfo=None)
    return parsed


def to_bool(raw: Any) -> bool:
    """``true``/``是``/``1``/``yes`` → True, ``false``/``否``/``0``/``no``/empty → False.

    Raises:
        ConversionError: any other text.
    """
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConversionError(f"{raw!r} is not a yes/no value")


def _to_int(raw: Any) -> int:
    value = to_decimal(raw, precision=None, money=False)
    if value != value.to_integral_value():
        raise ConversionError(f"{raw!r} is not a whole number")
    return int(value)


def _date(raw: Any, tz: ZoneInfo) -> str:
    day = to_datetime(raw, tz).date()
    if day.year >= 1000:  # isoformat pads years below 1000, strftime does not
        return f"{day.isoformat()} 00:00:00"
    return datetime.combine(day, time()).strftime(KINGDEE_DATETIME)


def _datetime(raw: Any, tz: ZoneInfo) -> str:
    value = to_datetime(raw, tz)
    if value.year >= 1000:
        return value.isoformat(" ", "seconds")
    return value.strftime(KINGDEE_DATETIME)


Converter = Callable[[Any, ZoneInfo], Any]
"""One conversion with its parameters bound: ``(raw, tenant time zone) → Kingdee value``."""


def converter(kind: str, *, precision: int) -> Converter:
    """The conversion ``kind`` at ``precision`` places, resolved once (per rule, at start-up).

    Money and decimals come back as :class:`~decimal.Decimal` with exactly ``precision`` places
    (``Decimal('1234.50')``), dates as ``yyyy-MM-dd HH:mm:ss``. Each raises
    :class:`ConversionError` when ``raw`` does not fit ``kind``.
    """
    if kind in ("money", "decimal"):
        money = kind == "money"
        quantum = _QUANTA.get(precision) or Decimal(1).scaleb(-precision)

        def number(raw: Any, _tz: ZoneInfo) -> Decimal:
            if type(raw) is str and _MONEY_SHAPE.match(raw):
                # plain "1234.50" with at most `precision` places: rounding changes nothing
                dot = raw.find(".")
                places = 0 if dot < 0 else len(raw.rstrip("\n")) - dot - 1
                if places <= precision and len(raw) + precision < _CONTEXT_DIGITS:
                    value = Decimal(raw)
                    return value if places == precision and dot >= 0 else value.quantize(quantum)
            return to_decimal(raw, precision=precision, money=money)

        return number
    return _SIMPLE.get(kind, _raw)


def _text(raw: Any) -> str:
    if isinstance(raw, datetime):
        return raw.strftime(KINGDEE_DATETIME)
    if isinstance(raw, date):
        return raw.isoformat()
    if isinstance(raw, (list, dict)):
        raise ConversionError("is a list or object, not text; use pick or convert: raw")
    return str(raw)


def _raw(raw: Any, _tz: ZoneInfo) -> Any:
    return raw


_SIMPLE: dict[str, Converter] = {
    "date": _date,
    "datetime": _datetime,
    "text": lambda raw, _tz: raw if isinstance(raw, str) else _text(raw),
    "int": lambda raw, _tz: _to_int(raw),
    "bool": lambda raw, _tz: to_bool(raw),
}
