"""The registry every named component uses: misses list the valid names, names are never replaced."""

from __future__ import annotations

import pytest

from netinvert._registry import Registry
from netinvert.exceptions import UnknownNameError


def test_register_get_and_list() -> None:
    reg: Registry[int] = Registry("solver")

    @reg.register("b")
    def b() -> int:
        return 2

    reg.add("a", 1)
    assert reg.get("a") == 1 and reg.get("b") is b
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"]
    assert "a" in reg and "c" not in reg


def test_twice_is_an_error_and_keeps_the_first() -> None:
    reg: Registry[int] = Registry("loss")
    reg.add("ce", 1)
    with pytest.raises(ValueError, match="A loss named 'ce' is already registered"):
        reg.add("ce", 2)
    assert reg.get("ce") == 1


def test_miss_lists_valid_names() -> None:
    reg: Registry[int] = Registry("encoding")
    with pytest.raises(UnknownNameError, match=r"Valid names: \(none\)"):
        reg.get("x")
    reg.add("totalizer", 1)
    reg.add("native", 2)
    with pytest.raises(KeyError) as info:  # a registry miss is also a KeyError for callers that catch those
        reg.get("totaliser")
    assert str(info.value) == "Unknown encoding 'totaliser'. Valid names: native, totalizer."
