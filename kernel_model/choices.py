"""The enumerated knobs of the model, one Enum each: the single list of allowed values.

Member name == value == the config spelling, so an Enum member, its name and the plain
string a cell config carries are interchangeable (str mixin: ``AnonPolicy.mthp == "mthp"``).
sweep/schema.py types its fields with these, so Hydra rejects a bad value while composing;
everything else that lists allowed values (Policy, the TLB config, report ordering)
derives from them, in declaration order.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """An enumerated config value; ``values()`` lists the spellings in declaration order."""

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)

    def __str__(self) -> str:
        return self.value


class AnonPolicy(Choice):  # folio.anon
    base = "base"
    mthp = "mthp"
    mthp_only = "mthp_only"


class PagecachePolicy(Choice):  # folio.pagecache
    fixed = "fixed"
    always_max = "always_max"
    drop_reread = "drop_reread"
    mmap_convert = "mmap_convert"
    bounce = "bounce"


class NativePgtable(Choice):  # arch.native_pgtable
    off = "off"
    mirror = "mirror"
    on_demand = "on_demand"


class Overhang(Choice):  # abi.overhang
    anon_fault = "anon_fault"
    sigbus = "sigbus"
    anon_vma = "anon_vma"


class TlbReplacement(Choice):  # tlb.replacement
    lru = "lru"
    fifo = "fifo"


def check_choice(value, choice: type[Choice], key: str) -> str:
    """``value`` as its plain string if ``choice`` allows it, else ValueError naming key and values."""
    if value not in choice.values():
        raise ValueError(f"{key}: {value!r} is not allowed; allowed: {', '.join(choice.values())}")
    return str(value)
