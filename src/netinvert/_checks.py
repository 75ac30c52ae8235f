"""The one message shape of a refused argument, shared by every config and function that checks its inputs.

scikit-learn's wording: ``The 'NAME' parameter of OWNER must be WANTED. Got VALUE instead.``, so a user reads the
same sentence whichever part of netinvert refused the value.
"""

from __future__ import annotations

from typing import Any

__all__ = ["bad_param", "check_param"]


def bad_param(owner: str, name: str, wanted: str, value: Any) -> ValueError:
    """The ``ValueError`` for ``value`` of parameter ``name`` of ``owner`` (raise it)."""
    return ValueError(f"The {name!r} parameter of {owner} must be {wanted}. Got {value!r} instead.")


def check_param(ok: bool, owner: str, name: str, wanted: str, value: Any) -> None:
    """Raise :func:`bad_param`'s error unless ``ok``."""
    if not ok:
        raise bad_param(owner, name, wanted, value)
