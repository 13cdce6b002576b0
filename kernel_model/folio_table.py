"""system.folios: the folio of each head pfn (pfn_folio() for heads), in allocation order.

Counterpart: the struct folio that mem_map holds for every allocated head frame
(include/linux/mm_types.h); the table is the model's index of them.

A FolioTable is a dict from head pfn to Folio, with one addition for the batched fault
path (fault_batch.py): the folios a batch makes are kept as arrays (pfn, order, and the
one rmap entry each: mm, address, pages mapped) until something first reads the table,
and only then become Folio objects, in the order they were added and before any folio
added later. A large cell makes ~10^5 anonymous folios that nothing but the cell's end
looks at again; building, and later freeing, one Python object and one rmap list for
each was a third of its fault time.

Every read of the table sees the whole table: each dict method that reads or changes
the contents is overridden to build the pending folios first when it needs them
(tests/kernel_model/test_folio_table.py checks that no dict method is left out).
`table[pfn]` for a pfn already built stays the plain dict lookup.
"""

from __future__ import annotations

import numpy as np

from .mm_types import Folio, RmapEntry

_MISSING = object()


class FolioTable(dict):
    """head pfn -> Folio, plus folios added in bulk by add_mapped() and built on first read."""

    __slots__ = ("_pending",)

    def __init__(self):
        super().__init__()
        self._pending: list[tuple] = []

    def add_mapped(self, mm, pfns: np.ndarray, orders: np.ndarray, addrs: np.ndarray, nrs: np.ndarray) -> None:
        """New anonymous folios, each mapped once by mm: kernel pages 0 .. nrs[i]-1 of the
        folio at pfns[i] (order orders[i]) at address addrs[i], so its mapcount is nrs[i]
        and its rmap the one entry (mm, addrs[i], 0, nrs[i]) (folio_add_new_anon_rmap() of
        a fresh fault). The arrays are kept as they are: the caller must not change them."""
        if pfns.size:
            self._pending.append((mm, pfns, orders, addrs, nrs))

    def _build(self) -> None:
        """Make the pending folios Folio objects, in the order they were added."""
        pending, self._pending = self._pending, []
        setitem = dict.__setitem__
        rmap_entry = tuple.__new__  # RmapEntry(mm, a, 0, n) without the namedtuple's Python-level __new__
        for mm, pfns, orders, addrs, nrs in pending:
            for p, o, a, n in zip(pfns.tolist(), orders.tolist(), addrs.tolist(), nrs.tolist()):
                setitem(self, p, Folio(p, o, True, n, [rmap_entry(RmapEntry, (mm, a, 0, n))]))  # positional: faster

    # -- lookups: the built folios first, the pending ones only on a miss --------------
    def __missing__(self, pfn):
        if not self._pending:
            raise KeyError(pfn)
        self._build()
        return self[pfn]

    def __contains__(self, pfn) -> bool:
        if dict.__contains__(self, pfn):
            return True
        if self._pending:
            self._build()
            return dict.__contains__(self, pfn)
        return False

    def get(self, pfn, default=None):
        folio = dict.get(self, pfn, _MISSING)
        if folio is _MISSING:
            if not self._pending:
                return default
            self._build()
            return dict.get(self, pfn, default)
        return folio

    def pop(self, pfn, *default):
        if self._pending and not dict.__contains__(self, pfn):
            self._build()
        return dict.pop(self, pfn, *default)

    def __delitem__(self, pfn) -> None:
        if self._pending and not dict.__contains__(self, pfn):
            self._build()
        dict.__delitem__(self, pfn)

    def clear(self) -> None:
        self._pending = []
        dict.clear(self)

    def __reduce_ex__(self, protocol):
        """pickle and copy: a new table (made by __init__), then its items, all built."""
        return FolioTable, (), None, None, iter(self.items())

    def __reduce__(self):
        return self.__reduce_ex__(2)

    # -- everything else sees the whole table, in allocation order ---------------------
    def _whole(name):  # noqa: N805 - a method factory, used in this class body only
        method = getattr(dict, name)

        def whole(self, *args, **kwargs):
            if self._pending:
                self._build()
            return method(self, *args, **kwargs)
        whole.__name__, whole.__qualname__, whole.__doc__ = name, f"FolioTable.{name}", method.__doc__
        return whole

    __setitem__ = _whole("__setitem__")  # after the pending folios: the table keeps allocation order
    __iter__ = _whole("__iter__")
    __reversed__ = _whole("__reversed__")
    __len__ = _whole("__len__")
    __eq__ = _whole("__eq__")
    __ne__ = _whole("__ne__")
    __repr__ = _whole("__repr__")
    __or__ = _whole("__or__")
    __ror__ = _whole("__ror__")
    __ior__ = _whole("__ior__")
    __sizeof__ = _whole("__sizeof__")
    keys = _whole("keys")
    values = _whole("values")
    items = _whole("items")
    copy = _whole("copy")
    popitem = _whole("popitem")
    setdefault = _whole("setdefault")
    update = _whole("update")
    del _whole
