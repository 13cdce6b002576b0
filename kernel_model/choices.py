"""The enumerated knobs of the model, one Enum each: the single list of allowed values.

Member name == value == the config spelling (Hydra and OmegaConf take a member by its
name), so an Enum member, its name and the plain string a cell config carries are
interchangeable (str mixin: ``AnonPolicy.mthp == "mthp"``).
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


def choices(name: str, values: str, module: str = __name__) -> type[Choice]:
    """The Choice ``name`` (defined in ``module``) whose members are the words of ``values``,
    in that order, each member's name its value."""
    return Choice(name, [(v, v) for v in values.split()], module=module, qualname=name)


AnonPolicy = choices("AnonPolicy", "base mthp mthp_only")  # folio.anon
PagecachePolicy = choices(  # folio.pagecache
    "PagecachePolicy", "fixed always_max drop_reread mmap_convert bounce")
NativePgtable = choices("NativePgtable", "off mirror on_demand")  # arch.native_pgtable
Overhang = choices("Overhang", "anon_fault sigbus anon_vma")  # abi.overhang
TlbReplacement = choices("TlbReplacement", "lru fifo")  # tlb.replacement


def check_choice(value, choice: type[Choice], key: str) -> str:
    """``value`` as its plain string if ``choice`` allows it, else ValueError naming key and values."""
    if value not in choice.values():
        raise ValueError(f"{key}: {value!r} is not allowed; allowed: {', '.join(choice.values())}")
    return str(value)
