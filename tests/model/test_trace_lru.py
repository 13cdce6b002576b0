"""A one-cell run over a real lackey trace with base folios, no contpte, no native table
and no PMD THP gives exactly the TLB miss counts of a textbook
LRU simulator over the same page numbers: a 48-entry fully associative L1 and a
1280-entry 5-way L2 (set = page % 256), the L2 looked up on an L1 miss, a miss filling both.
The reference below shares no code with kernel_model: it parses the trace itself."""

import gzip
from collections import OrderedDict

import pytest

from kernel_model.simulate import simulate


def lackey_data_addresses(path):
    addrs = []
    with gzip.open(path, "rt") as f:
        for line in f:
            if line[:1] == " " and line[1:2] in ("L", "S", "M"):
                addrs.append(int(line[3:].split(",")[0], 16))
    return addrs


class Lru:
    def __init__(self, entries, ways):
        self.sets = [OrderedDict() for _ in range(entries // ways)]
        self.ways = ways

    def access(self, tag):
        s = self.sets[tag % len(self.sets)]
        if tag in s:
            s.move_to_end(tag)
            return True
        if len(s) == self.ways:
            s.popitem(last=False)
        s[tag] = True
        return False


def textbook_misses(pages):
    l1, l2 = Lru(48, 48), Lru(1280, 5)
    l1_miss = l2_miss = 0
    for p in pages:
        if l1.access(p):
            continue
        l1_miss += 1
        if not l2.access(p):
            l2_miss += 1
    return l1_miss, l2_miss


@pytest.mark.parametrize("kernel,shift", [("4k", 12), ("16k", 14), ("64k", 16)])
def test_trace_misses_equal_textbook_lru(cell_config, trace_path, kernel, shift):
    cfg = cell_config(f"kernel={kernel}", "process.page_size=kernel", "folio.anon=base",
                      "folio.thp_pmd=false", "arch.contpte=false", "arch.native_pgtable=off",
                      "tlb.l1.entries=48", "tlb.l1.ways=48", "tlb.l2.entries=1280", "tlb.l2.ways=5",
                      "workload=trace", f"workload.path={trace_path}", "memory.size=2G")
    m = simulate(cfg)
    addrs = lackey_data_addresses(trace_path)
    assert m["accesses"] == len(addrs) == 59102
    assert (m["l1_tlb_misses"], m["l2_tlb_misses"]) == textbook_misses([a >> shift for a in addrs])
    assert m["walks"] == m["l2_tlb_misses"]
