"""Sizes as the configs spell them ("4K", "64K", "8G", 4096) and back."""

from __future__ import annotations

_SUFFIX = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

PAGE_SIZES = (4096, 16384, 65536)


def parse_size(value, *, what: str = "size") -> int:
    """Return a byte count for 4096, "4096", "4K", "4k", "64KiB", "8G".

    Raises ValueError naming `what` when the value is not a size.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a size such as 4K or 8G, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what}: size must not be negative, got {value}")
        return value
    text = str(value).strip().upper()
    if text.endswith("IB"):
        text = text[:-2]
    num, suffix = text, ""
    if text and text[-1] in _SUFFIX:
        num, suffix = text[:-1], text[-1]
    try:
        n = int(num)
    except ValueError:
        raise ValueError(f"{what}: expected a size such as 4K or 8G, got {value!r}") from None
    if n < 0:
        raise ValueError(f"{what}: size must not be negative, got {value!r}")
    return n * _SUFFIX[suffix]


def parse_page_size(value, *, what: str = "page_size") -> int:
    """A page size: one of 4K, 16K, 64K (arm64 granules)."""
    try:
        size = parse_size(value, what=what)
    except ValueError:
        size = None
    if size not in PAGE_SIZES:
        raise ValueError(f"{what}: {value!r} is not a page size; allowed: 4K, 16K, 64K")
    return size


def format_size(n: int) -> str:
    """4096 -> "4K", 65536 -> "64K", 3 -> "3"; exact, never rounded."""
    for suffix in ("T", "G", "M", "K"):
        unit = _SUFFIX[suffix]
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def ilog2(n: int) -> int:
    if n <= 0 or n & (n - 1):
        raise ValueError(f"{n} is not a power of two")
    return n.bit_length() - 1
