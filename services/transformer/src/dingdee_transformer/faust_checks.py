"""How the faust adapter fails when a private name it relies on is missing: loudly, naming it.

The names themselves, and why each is used, are listed in :mod:`dingdee_transformer.faust_adapter`,
the only module that touches them; this one only checks that names exist (by their spelling).
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
import mode

__all__ = ["FaustInternalsError", "declared", "internal", "require"]


class FaustInternalsError(RuntimeError):
    """A faust, mode or aiokafka private name this module relies on is missing."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            f"faust-streaming {faust.__version__} / mode-streaming {mode.__version__} / aiokafka "
            f"{aiokafka.__version__} lack {', '.join(missing)}, which the transformer relies on "
            "(dingdee_transformer.faust_adapter); install the versions pinned in "
            "services/transformer/pyproject.toml"
        )


def declared(cls: type, name: str) -> bool:
    """Whether ``cls`` (or a base) defines or annotates ``name``."""
    return hasattr(cls, name) or any(
        name in vars(c).get("__annotations__", {}) for c in cls.__mro__
    )


def require(owner: Any, names: tuple[str, ...], *, on_instance: bool = False) -> None:
    """Raise :class:`FaustInternalsError` for the ``names`` ``owner`` lacks."""
    where = owner if on_instance or not isinstance(owner, type) else None
    label = type(owner).__qualname__ if where is not None else owner.__qualname__
    missing = [
        f"{label}.{name}"
        for name in names
        if not (hasattr(where, name) if where is not None else declared(owner, name))
    ]
    if missing:
        raise FaustInternalsError(missing)


def internal(obj: Any, name: str) -> Any:
    """``obj.name``, a private attribute that must exist."""
    try:
        return getattr(obj, name)
    except AttributeError:
        raise FaustInternalsError([f"{type(obj).__qualname__}.{name}"]) from None
