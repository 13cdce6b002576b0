"""FolioTable (system.folios): folios added as arrays read back as the Folio objects the
per-fault path would have made, in allocation order, through every dict method."""

import copy
import pickle

import numpy as np
import pytest

from kernel_model.folio_table import FolioTable
from kernel_model.mm_types import Folio, RmapEntry

MM = object()  # an rmap entry only holds its mm

# dict members a FolioTable may inherit: the object machinery, the comparisons dict leaves
# unimplemented, fromkeys (a classmethod making a new table), and __getitem__, which finds
# a built folio directly and calls __missing__ (overridden) otherwise
INHERITED = {"__class__", "__class_getitem__", "__delattr__", "__dir__", "__doc__", "__format__", "__ge__",
             "__getattribute__", "__getitem__", "__getstate__", "__gt__", "__hash__", "__init_subclass__", "__le__",
             "__lt__", "__new__", "__setattr__", "__str__", "__subclasshook__", "fromkeys"}


def arrays(*rows):
    """(pfns, orders, addrs, nrs) of folio rows (pfn, order, addr, nr)."""
    return tuple(np.array(col, np.int64) for col in zip(*rows))


def table_with_pending() -> FolioTable:
    """pfn 7 built, then 16 (order 2) and 32 (order 0) pending, then nothing else."""
    t = FolioTable()
    t[7] = Folio(7, 0)
    t.add_mapped(MM, *arrays((16, 2, 0x10000, 4), (32, 0, 0x20000, 1)))
    return t


def test_every_dict_method_that_reads_or_changes_the_table_is_overridden():
    missing = [name for name in dir(dict) if name not in INHERITED and name not in vars(FolioTable)]
    assert missing == []


def test_pending_folios_are_built_as_a_fault_maps_them():
    t = table_with_pending()
    f = t[16]
    assert (f.pfn, f.order, f.anon, f.mapcount, f.nr_pages, f.pincount, f.mlock_count) == (16, 2, True, 4, 4, 0, 0)
    assert f.rmap == [RmapEntry(MM, 0x10000, 0, 4)] and f.rmap[0].mm is MM and type(f.rmap[0]) is RmapEntry
    assert t[32].rmap == [(MM, 0x20000, 0, 1)] and t[32].mapcount == 1
    assert t[16] is f  # built once


@pytest.mark.parametrize("read", [
    lambda t: 16 in t, lambda t: t.get(16), lambda t: t[16], lambda t: len(t), lambda t: list(t),
    lambda t: list(t.items()), lambda t: t.pop(16), lambda t: t.setdefault(16, None), lambda t: t == {}])
def test_a_read_that_needs_the_pending_folios_builds_them(read):
    t = table_with_pending()
    read(t)
    assert t._pending == []


def test_a_lookup_of_a_built_folio_leaves_the_rest_pending():
    t = table_with_pending()
    assert t[7].pfn == 7 and t.get(7).pfn == 7 and 7 in t
    assert len(t._pending) == 1 and dict.__len__(t) == 1


def test_reads_see_the_whole_table_in_allocation_order():
    t = table_with_pending()
    t[40] = Folio(40, 0)  # added after the pending ones: it comes after them
    assert list(t) == [7, 16, 32, 40] and len(t) == 4
    assert [p for p, _ in t.items()] == [7, 16, 32, 40] and [f.pfn for f in t.values()] == [7, 16, 32, 40]
    assert list(reversed(t)) == [40, 32, 16, 7] and list(t.copy()) == [7, 16, 32, 40]


def test_missing_pfns_behave_as_in_a_dict():
    t = table_with_pending()
    assert 99 not in t and t.get(99) is None and t.get(99, "x") == "x" and t.pop(99, None) is None
    with pytest.raises(KeyError):
        t[99]
    with pytest.raises(KeyError):
        del t[99]
    with pytest.raises(KeyError):
        t.pop(98)


def test_pop_and_del_of_a_pending_folio_remove_only_it():
    t = table_with_pending()
    assert t.pop(16).order == 2
    del t[32]
    assert list(t) == [7]


def test_clear_drops_the_pending_folios_unbuilt():
    t = table_with_pending()
    t.clear()
    assert t._pending == [] and len(t) == 0 and 16 not in t


def test_no_folios_adds_nothing():
    t = FolioTable()
    t.add_mapped(MM, *(np.zeros(0, np.int64),) * 4)
    assert t._pending == [] and dict(t) == {}


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy, lambda t: pickle.loads(pickle.dumps(t))])
def test_a_copied_table_holds_every_folio_in_order(clone):
    t = table_with_pending()
    t.add_mapped("mm", *arrays((48, 0, 0x30000, 1)))  # a picklable mm
    c = clone(t)
    assert type(c) is FolioTable and c._pending == [] and list(c) == [7, 16, 32, 48]
    assert [(f.pfn, f.order, f.mapcount) for f in c.values()] == [(7, 0, 0), (16, 2, 4), (32, 0, 1), (48, 0, 1)]
    assert c[48].rmap == [("mm", 0x30000, 0, 1)]
