"""dingdee shared library: the contracts and plumbing the three services agree on."""

from dingdee_common.errors import (
    DingdeeError,
    ErrorClass,
    FatalError,
    PermanentError,
    PoisonMessageError,
    TransientError,
)

__all__ = [
    "DingdeeError",
    "ErrorClass",
    "FatalError",
    "PermanentError",
    "PoisonMessageError",
    "TransientError",
]
