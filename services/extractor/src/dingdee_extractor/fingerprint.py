"""The fingerprint of the fields of an instance that matter downstream (DESIGN §2)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

__all__ = ["TERMINAL", "fingerprint", "is_terminal"]

TERMINAL = frozenset({"COMPLETED", "TERMINATED", "CANCELED", "ERROR"})
_FIELDS = (
    "status",
    "result",
    "finish_time",
    "biz_action",
    "attached_process_instance_ids",
    "main_process_instance_id",
    "form_component_values",
)


def fingerprint(instance: dict[str, Any]) -> str:
    """A short stable hash of status, result, finish time, links and form values."""
    relevant = {k: instance.get(k) for k in _FIELDS}
    digest = hashlib.blake2b(orjson.dumps(relevant, option=orjson.OPT_SORT_KEYS), digest_size=12)
    return digest.hexdigest()


def is_terminal(instance: dict[str, Any]) -> bool:
    return str(instance.get("status", "")).upper() in TERMINAL
