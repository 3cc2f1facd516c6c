"""JSON (orjson) encoding of message values, with poison detection on decode.

Amounts are :class:`~decimal.Decimal` and are written as JSON numbers with their exact digits
(``1234.50``, ``99999999999999999999.99``), never through a float. Messages whose contract says
so (``exact_numbers``, e.g. ``BillReady``) are read back with every JSON fraction as a Decimal:
orjson would read ``12345678901234567.89`` as the float ``1.2345678901234568e+16``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from dingdee_common.errors import PoisonMessageError

__all__ = ["decode_model", "dumps", "encode_model", "loads"]

M = TypeVar("M", bound=BaseModel)


def _exact(value: Decimal) -> orjson.Fragment:
    text = str(value)  # plain digits unless the exponent is large: then format(…, "f")
    if "E" in text or not value.is_finite():
        if not value.is_finite():
            raise TypeError(f"{value} is not a JSON number")
        text = format(value, "f")
    return orjson.Fragment(text)


def _default(value: Any) -> Any:
    """What orjson does not write itself: a Decimal as its exact digits, a model as its fields."""
    if isinstance(value, Decimal):
        return _exact(value)
    if isinstance(value, BaseModel):
        return value.__dict__
    raise TypeError(type(value).__name__)


def dumps(value: Any, *, indent: bool = False, sort_keys: bool = False) -> bytes:
    """``value`` as JSON bytes; a Decimal becomes a JSON number with its exact digits."""
    option = (orjson.OPT_INDENT_2 if indent else 0) | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    return orjson.dumps(value, default=_default, option=option or None)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(data: bytes | str, *, exact: bool = False) -> Any:
    """Parse JSON; with ``exact`` every number with a fraction or exponent is a Decimal.

    Raises:
        ValueError: not JSON (``orjson.JSONDecodeError`` and ``json.JSONDecodeError`` are both
            ValueErrors), or nested too deep.
    """
    if not exact:
        return orjson.loads(data)
    try:
        return json.loads(data, parse_float=Decimal, parse_constant=_no_constant)
    except RecursionError as exc:
        raise ValueError("JSON nested too deep") from exc


def encode_model(model: BaseModel) -> bytes:
    """Serialise a contract model to UTF-8 JSON bytes: the bytes pydantic's serializer writes.

    orjson writes the model's fields directly, in a third of pydantic's time for a bill (whose
    Model is typed ``Any``, which pydantic inspects value by value). That holds for models with
    plain fields, as the contracts are: no aliases, custom serializers or excluded fields (a
    test holds every contract model to pydantic's bytes). One difference on purpose: a Decimal
    is a JSON number with its exact digits (pydantic writes a string). Any other value orjson
    does not know (bytes, a set …) falls back to pydantic's serializer for the whole model.
    """
    try:
        return orjson.dumps(model, default=_default, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        return model.__pydantic_serializer__.to_json(model, by_alias=True)


def decode_model(data: bytes | None, model: type[M], *, supported_versions: frozenset[int]) -> M:
    """Decode ``data`` into ``model``.

    Raises:
        PoisonMessageError: empty value, undecodable JSON, unknown ``schema_version`` or a value
            that breaks the contract; the message says which.
    """
    if not data:
        raise PoisonMessageError("empty message value", code="empty_value")
    try:
        raw = loads(data, exact=getattr(model, "exact_numbers", False))
    except ValueError as exc:
        raise PoisonMessageError(f"value is not UTF-8 JSON: {exc}", code="undecodable") from exc
    if not isinstance(raw, dict):
        raise PoisonMessageError("value is not a JSON object", code="undecodable")
    version = raw.get("schema_version")
    if version not in supported_versions:
        raise PoisonMessageError(
            f"unsupported schema_version {version!r} for {model.__name__}; "
            f"this build reads {sorted(supported_versions)}",
            field="schema_version",
            code="unknown_schema_version",
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PoisonMessageError(
            f"{model.__name__} contract broken at {where}: {first['msg']}",
            field=where,
            code="contract_violation",
        ) from exc
