"""TLB model: exact counts against textbook LRU simulators and hand-worked walks.

The page tables here are a small test double (the `Lookup` fields of the pgtable
contract, built from arithmetic): table of level j for an address lives at
REGION[j] + (addr >> shift[j-1]) * table_bytes, so tables never overlap and every
descriptor address is known in closed form.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from kernel_model.tlb import TlbConfig, simulate_tlb

CONF = Path(__file__).resolve().parents[2] / "conf" / "tlb"
PFN_BASE = 1 << 20  # kernel pfn of virtual page 0 in the test double


def load_cfg(name, **overrides):
    raw = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    raw.update(overrides)
    return TlbConfig.from_cfg(raw)


@dataclass
class FakeLookup:
    present: np.ndarray
    pfn: np.ndarray
    base_shift: np.ndarray
    leaf_shift: np.ndarray
    desc_addr: np.ndarray


def level_shifts(page_shift, levels):
    """arm64 ARM64_HW_PGTABLE_LEVEL_SHIFT for the last `levels` levels, top..leaf."""
    return [(page_shift - 3) * k + page_shift for k in range(levels - 1, -1, -1)]


def make_lookup(addrs, *, page_shift=12, levels=4, kernel_page_shift=None, leaf_shift=None,
                leaf_level=None, present=None):
    """A Lookup for a page table in which every address is mapped (unless `present`
    says otherwise) by an identity-plus-offset pfn.  leaf_shift: per-access mapping
    size (contpte run or block); leaf_level: per-access index of the leaf descriptor
    (levels-1 for a PTE, levels-2 for a PMD block)."""
    addrs = np.asarray(addrs, dtype=np.int64)
    n = addrs.size
    kps = page_shift if kernel_page_shift is None else kernel_page_shift
    shifts = level_shifts(page_shift, levels)
    entries = 1 << (page_shift - 3)
    table_bytes = entries * 8
    desc = np.empty((n, levels), dtype=np.int64)
    for j, sh in enumerate(shifts):
        prefix = np.zeros(n, np.int64) if j == 0 else addrs >> shifts[j - 1]
        index = (addrs >> sh) & (entries - 1)
        desc[:, j] = ((j + 1) << 40) + prefix * table_bytes + index * 8
    if leaf_level is not None:
        leaf_level = np.broadcast_to(np.asarray(leaf_level), (n,))
        desc[np.arange(levels)[None, :] > leaf_level[:, None]] = -1
    present = np.ones(n, bool) if present is None else np.asarray(present, bool)
    pfn = np.where(present, (addrs >> kps) + PFN_BASE, -1)
    base = np.full(n, page_shift, np.int8)
    leaf = base.copy() if leaf_shift is None else np.broadcast_to(
        np.asarray(leaf_shift, np.int8), (n,)).copy()
    return FakeLookup(present, pfn, base, leaf, desc)


# ---------------------------------------------------------------- references

def textbook_lru(pages, entries):
    """Misses of a fully associative LRU cache of `entries` pages, and the miss stream."""
    cache, misses = OrderedDict(), []
    for p in pages:
        if p in cache:
            cache.move_to_end(p)
        else:
            misses.append(p)
            cache[p] = None
            if len(cache) > entries:
                cache.popitem(last=False)
    return misses


def textbook_set_lru(pages, entries, ways):
    """Misses of a set-associative LRU cache (set = page % sets)."""
    sets = [OrderedDict() for _ in range(entries // ways)]
    misses = []
    for p in pages:
        s = sets[p % len(sets)]
        if p in s:
            s.move_to_end(p)
        else:
            misses.append(p)
            s[p] = None
            if len(s) > ways:
                s.popitem(last=False)
    return misses


class RefCache:
    def __init__(self, sets, ways, lru=True):
        self.sets = [OrderedDict() for _ in range(sets)]
        self.ways, self.lru = ways, lru

    def lookup(self, s, key):
        d = self.sets[s]
        if key in d:
            if self.lru:
                d.move_to_end(key)
            return True
        return False

    def fill(self, s, key):
        d = self.sets[s]
        evicted = None
        if len(d) >= self.ways:
            evicted, _ = d.popitem(last=False)
        d[key] = None
        return evicted


def reference_hardware(addrs, lk, cfg, kps):
    """Per-access Python model of the documented semantics, written independently of
    the numba kernel (tuple keys, OrderedDicts, no pre-filter)."""
    lru = cfg.replacement == "lru"
    l1 = RefCache(cfg.l1.sets, cfg.l1.ways, lru)
    l2 = RefCache(cfg.l2.sets, cfg.l2.ways, lru)
    wc = RefCache(max(cfg.walk_cache.sets, 1), max(cfg.walk_cache.ways, 1), lru)
    d1 = RefCache(cfg.l1d.sets, cfg.l1d.ways)
    d2 = RefCache(cfg.l2d.sets, cfg.l2d.ways)
    c = dict.fromkeys(["l1", "l2", "walks", "refs", "cycles", "wch", "ptd1", "ptd2", "dd1", "dd2"], 0)

    def read(line):
        if d1.lookup(line % cfg.l1d.sets, line):
            return 0
        if d2.lookup(line % cfg.l2d.sets, line):
            lvl = 1
        else:
            lvl = 2
            ev = d2.fill(line % cfg.l2d.sets, line)
            if ev is not None:
                d1.sets[ev % cfg.l1d.sets].pop(ev, None)
        d1.fill(line % cfg.l1d.sets, line)
        return lvl

    for i, a in enumerate(int(x) for x in addrs):
        walk = False
        if not lk.present[i]:
            c["l1"] += 1
            c["l2"] += 1
            walk = True
        else:
            sh = int(lk.leaf_shift[i] if cfg.coalesce_contig else lk.base_shift[i])
            key = (a >> sh, sh)
            if not l1.lookup((a >> sh) % cfg.l1.sets, key):
                c["l1"] += 1
                if not l2.lookup((a >> sh) % cfg.l2.sets, key):
                    c["l2"] += 1
                    walk = True
                    l2.fill((a >> sh) % cfg.l2.sets, key)
                l1.fill((a >> sh) % cfg.l1.sets, key)
        if walk:
            c["walks"] += 1
            ds = [int(d) for d in lk.desc_addr[i] if d >= 0]
            start = 0
            if cfg.walk_cache.entries:
                c["cycles"] += cfg.walk_cache.latency
                for j in range(len(ds) - 2, -1, -1):
                    if wc.lookup((ds[j] >> 3) % cfg.walk_cache.sets, ds[j]):
                        c["wch"] += 1
                        start = j + 1
                        break
            for j in range(start, len(ds)):
                c["refs"] += 1
                lvl = read(ds[j] >> 6)
                c["cycles"] += (cfg.l1d.latency, cfg.l2d.latency, cfg.mem_latency)[lvl]
                c["ptd1"] += lvl >= 1
                c["ptd2"] += lvl == 2
                if j < len(ds) - 1 and cfg.walk_cache.entries:
                    wc.fill((ds[j] >> 3) % cfg.walk_cache.sets, ds[j])
        if cfg.model_data_lines and lk.present[i]:
            line = ((int(lk.pfn[i]) << kps) | (a & ((1 << kps) - 1))) >> 6
            lvl = read(line)
            c["dd1"] += lvl >= 1
            c["dd2"] += lvl == 2
    return {"accesses": len(addrs), "l1_tlb_misses": c["l1"], "l2_tlb_misses": c["l2"],
            "walks": c["walks"], "walk_mem_refs": c["refs"], "walk_cycles": c["cycles"],
            "tlb_walk_cache_hits": c["wch"], "tlb_pgtable_l1d_misses": c["ptd1"],
            "tlb_pgtable_l2d_misses": c["ptd2"], "tlb_data_l1d_misses": c["dd1"],
            "tlb_data_l2d_misses": c["dd2"]}


# ---------------------------------------------------------------- streams

def stream(kind, n, npages, seed, page_shift=12):
    rng = np.random.default_rng(seed)
    if kind == "random":
        pages = rng.integers(0, npages, n)
    elif kind == "zipf":
        pages = (rng.zipf(1.3, n) - 1) % npages
    elif kind == "sequential":
        pages = np.arange(n) % npages
    else:
        raise ValueError(kind)
    offsets = rng.integers(0, 1 << page_shift, n) & ~7
    return (pages << page_shift) + offsets + (1 << 32)


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("kind", ["random", "zipf", "sequential"])
@pytest.mark.parametrize("page_shift", [12, 14, 16])
def test_base_pages_match_textbook_lru(kind, page_shift):
    """48-entry fully associative L1 and 1280-entry 5-way L2 over page numbers."""
    cfg = load_cfg("neoverse_n1", model_data_lines=False)
    addrs = stream(kind, 30000, 3000, seed=7, page_shift=page_shift)
    lk = make_lookup(addrs, page_shift=page_shift, levels=4 if page_shift < 16 else 3)
    res = simulate_tlb(addrs, lk, cfg)
    pages = [int(a) >> page_shift for a in addrs]
    l1_misses = textbook_lru(pages, 48)
    l2_misses = textbook_set_lru(l1_misses, 1280, 5)
    assert (res["l1_tlb_misses"], res["l2_tlb_misses"]) == (len(l1_misses), len(l2_misses))
    assert res["walks"] == len(l2_misses)
    assert res["accesses"] == 30000


def test_matches_reference_hardware_on_mixed_sizes_and_holes():
    """Everything at once on the tiny config: contpte runs, PMD blocks, unmapped pages,
    repeats (the pre-filter), walk cache, inclusive L1D/L2D, data lines."""
    rng = np.random.default_rng(11)
    n = 6000
    pages = (rng.zipf(1.2, n) - 1) % 1500
    pages[::7] = pages[::7] // 3  # some immediate-ish reuse
    addrs = np.repeat((pages << 12) + (rng.integers(0, 4096, n) & ~7), rng.integers(1, 4, n))
    m = addrs.size
    kind = (addrs >> 16) % 4  # 0: base page, 1: contpte run, 2: PMD block, 3: hole
    leaf = np.where(kind == 1, 16, np.where(kind == 2, 21, 12))
    leaf_level = np.where(kind == 2, 2, 3)
    lk = make_lookup(addrs, leaf_shift=leaf, leaf_level=leaf_level, present=kind != 3)
    for coalesce in (True, False):
        for replacement in ("lru", "fifo"):
            cfg = load_cfg("tiny", coalesce_contig=coalesce, replacement=replacement)
            res = simulate_tlb(addrs, lk, cfg, kernel_page_shift=12)
            ref = reference_hardware(addrs, lk, cfg, 12)
            assert {k: res[k] for k in ref} == ref, (coalesce, replacement)
            assert res["tlb_not_present"] == int(np.count_nonzero(kind == 3))
            assert res["tlb_cycles"] == m * 1 + res["l1_tlb_misses"] * 3 + res["walk_cycles"]


def test_reference_hardware_16k_kernel_64k_walks_no_walk_cache():
    """A 16K kernel whose accesses walk a 3-level 64K table; walk cache disabled."""
    rng = np.random.default_rng(3)
    addrs = (rng.integers(0, 400, 4000) << 16) + (rng.integers(0, 1 << 16, 4000) & ~7)
    lk = make_lookup(addrs, page_shift=16, levels=3, kernel_page_shift=14)
    cfg = load_cfg("tiny", walk_cache={"entries": 0, "ways": 1, "latency": 1})
    res = simulate_tlb(addrs, lk, cfg, kernel_page_shift=14)
    ref = reference_hardware(addrs, lk, cfg, 14)
    assert {k: res[k] for k in ref} == ref
    assert res["tlb_walk_cache_hits"] == 0
    assert res["walk_mem_refs"] == 3 * res["walks"]


def test_contpte_run_is_one_entry():
    # 4K pages, CONT_PTE = 16 pages (64K); every page of the run touched once:
    # page   0123456789abcdef
    #        CCCCCCCCCCCCCCCC    C = one folded contpte run, leaf_shift 16
    addrs = np.arange(16, dtype=np.int64) << 12
    lk = make_lookup(addrs, leaf_shift=16)
    coalesced = simulate_tlb(addrs, lk, load_cfg("tiny", model_data_lines=False))
    split = simulate_tlb(addrs, lk, load_cfg("tiny", model_data_lines=False, coalesce_contig=False))
    assert (coalesced["l1_tlb_misses"], coalesced["l2_tlb_misses"]) == (1, 1)
    assert (split["l1_tlb_misses"], split["l2_tlb_misses"]) == (16, 16)


def test_entry_sizes_do_not_alias():
    # A 4K entry for page 0x10 and a 64K entry for run 0x10 share the tag 0x10:
    # va  0x10000 (4K page 0x10)   0x100000 (64K run 0x10)   0x10000 again
    addrs = np.array([0x10000, 0x100000, 0x10000], dtype=np.int64)
    lk = make_lookup(addrs, leaf_shift=[12, 16, 12])
    res = simulate_tlb(addrs, lk, load_cfg("tiny", model_data_lines=False))
    assert (res["l1_tlb_misses"], res["l2_tlb_misses"]) == (2, 2)


def test_not_present_counts_every_access_and_never_fills():
    # page   0 1 0 1 0      page 1 is unmapped: each access misses both TLBs and walks
    addrs = np.array([0, 1, 0, 1, 0], dtype=np.int64) << 12
    lk = make_lookup(addrs, present=[True, False, True, False, True])
    res = simulate_tlb(addrs, lk, load_cfg("tiny", model_data_lines=False))
    assert [res[k] for k in ("l1_tlb_misses", "l2_tlb_misses", "walks", "tlb_not_present")] == [3, 3, 3, 2]


def test_fifo_differs_from_lru_as_a_textbook_says():
    # fully associative, 4 entries:  A B C D A E A
    # LRU : the second A hits, E evicts B, the last A hits        -> 5 misses
    # FIFO: the second A hits, E evicts A (oldest fill), A misses  -> 6 misses
    addrs = np.array([0, 1, 2, 3, 0, 4, 0], dtype=np.int64) << 12
    lk = make_lookup(addrs)
    lru = simulate_tlb(addrs, lk, load_cfg("tiny", model_data_lines=False))
    fifo = simulate_tlb(addrs, lk, load_cfg("tiny", model_data_lines=False, replacement="fifo"))
    assert (lru["l1_tlb_misses"], fifo["l1_tlb_misses"]) == (5, 6)


def test_l2_set_index_is_tag_mod_sets():
    # tiny L2: 4 sets x 4 ways.  Pages 0,4,8,12,16 all index set 0 and thrash it; pages
    # 0..4 spread over the sets and fit.  L1 (4 entries) misses on every access of both.
    conflict = np.array([0, 4, 8, 12, 16] * 2, dtype=np.int64) << 12
    spread = np.array([0, 1, 2, 3, 5] * 2, dtype=np.int64) << 12
    cfg = load_cfg("tiny", model_data_lines=False)
    a = simulate_tlb(conflict, make_lookup(conflict), cfg)
    b = simulate_tlb(spread, make_lookup(spread), cfg)
    assert (a["l1_tlb_misses"], a["l2_tlb_misses"]) == (10, 10)
    assert (b["l1_tlb_misses"], b["l2_tlb_misses"]) == (10, 5)


def test_walk_cache_resumes_below_deepest_hit_with_exact_cycles():
    # 4K, 4 levels (PGD PUD PMD PTE).  Access      shares with earlier    reads  cycles
    #   a  va 0          cold                      -                      4      1 + 4*208
    #   b  va 4K         same PTE table            PMD desc (wc)          1      1 + 4 (PTE line in L1D)
    #   c  va 2M         same PMD table            PUD desc (wc)          2      1 + 4 + 208
    #   d  va 1G         same PUD table            PGD desc (wc)          3      1 + 4 + 208 + 208
    addrs = np.array([0, 1 << 12, 1 << 21, 1 << 30], dtype=np.int64)
    res = simulate_tlb(addrs, make_lookup(addrs), load_cfg("neoverse_n1", model_data_lines=False))
    assert [res[k] for k in ("walks", "walk_mem_refs", "tlb_walk_cache_hits", "walk_cycles",
                             "tlb_pgtable_l1d_misses", "tlb_pgtable_l2d_misses")] == \
        [4, 10, 3, 833 + 5 + 213 + 421, 7, 7]


def test_pmd_block_walk_stops_at_pmd():
    # A 2M block: descriptors PGD PUD PMD(block); two accesses 4K apart share one entry.
    addrs = np.array([0, 1 << 12], dtype=np.int64)
    lk = make_lookup(addrs, leaf_shift=21, leaf_level=2)
    res = simulate_tlb(addrs, lk, load_cfg("tiny", model_data_lines=False))
    assert [res[k] for k in ("l1_tlb_misses", "walks", "walk_mem_refs")] == [1, 1, 3]


def test_data_lines_compete_with_pgtable_lines():
    # tiny L1D holds 8 lines.  Streaming 64 distinct data lines through one page evicts
    # the page-table lines; the next walk (a new page, same PTE table) misses L1D.
    data = (np.arange(64, dtype=np.int64) * 64)
    addrs = np.concatenate([data, [1 << 12]])
    lk = make_lookup(addrs)
    on = simulate_tlb(addrs, lk, load_cfg("tiny"), kernel_page_shift=12)
    off = simulate_tlb(addrs, lk, load_cfg("tiny", model_data_lines=False))
    # both: walk 1 = 4 cold reads; walk 2 = 1 read (walk cache hit at the PMD desc)
    assert (on["walk_mem_refs"], off["walk_mem_refs"]) == (5, 5)
    assert (off["walk_cycles"], off["tlb_pgtable_l1d_misses"]) == (1 + 400 + 1 + 4, 4)
    assert on["tlb_pgtable_l1d_misses"] == 5
    assert on["tlb_data_l1d_misses"] == 65


def test_deterministic():
    addrs = stream("zipf", 5000, 800, seed=5)
    lk = make_lookup(addrs)
    cfg = load_cfg("tiny")
    assert simulate_tlb(addrs, lk, cfg, kernel_page_shift=12) == simulate_tlb(addrs, lk, cfg, kernel_page_shift=12)


def test_empty_stream():
    lk = make_lookup(np.zeros(0, np.int64))
    res = simulate_tlb(np.zeros(0, np.int64), lk, load_cfg("tiny"), kernel_page_shift=12)
    assert res["accesses"] == 0 and res["l1_tlb_misses"] == 0 and res["walk_cycles"] == 0


def test_is_write_counted_and_checked():
    addrs = np.array([0, 4096, 0], dtype=np.int64)
    lk = make_lookup(addrs)
    res = simulate_tlb(addrs, lk, load_cfg("tiny"), kernel_page_shift=12, is_write=[True, False, True])
    assert res["tlb_write_accesses"] == 2
    with pytest.raises(ValueError, match="is_write must have shape"):
        simulate_tlb(addrs, lk, load_cfg("tiny"), kernel_page_shift=12, is_write=[True])


def test_neoverse_n1_config_values():
    cfg = load_cfg("neoverse_n1")
    assert (cfg.l1.entries, cfg.l1.ways, cfg.l1.sets) == (48, 48, 1)
    assert (cfg.l2.entries, cfg.l2.ways, cfg.l2.sets) == (1280, 5, 256)
    assert (cfg.l1d.sets, cfg.l2d.sets, cfg.line_size) == (256, 2048, 64)
    assert cfg.coalesce_contig is True and cfg.model_data_lines is True


@pytest.mark.parametrize("override, message", [
    ({"l2": {"entries": 1280, "ways": 3, "latency": 3}}, "multiple of ways"),
    ({"l1": {"entries": 48, "ways": 48}}, "missing key"),
    ({"replacement": "random"}, "not allowed"),
    ({"l1d": {"size": 60000, "ways": 4, "latency": 4}}, "multiple of line_size"),
    ({"line_size": 48}, "power of two"),
    ({"coalesce_contig": "yes"}, "true or false"),
    ({"bogus": 1}, "unknown key"),
    ({"l1": {"entries": 0, "ways": 1, "latency": 1}}, "must be >= 1"),
])
def test_config_errors_say_what_to_fix(override, message):
    raw = yaml.safe_load((CONF / "neoverse_n1.yaml").read_text())
    raw.update(override)
    with pytest.raises(ValueError, match=message):
        TlbConfig.from_cfg(raw)


def test_input_errors_say_what_to_fix():
    cfg = load_cfg("tiny")
    addrs = np.array([0, 4096], dtype=np.int64)
    lk = make_lookup(addrs)
    with pytest.raises(ValueError, match="kernel_page_shift"):
        simulate_tlb(addrs, lk, cfg)
    with pytest.raises(ValueError, match="rows"):
        simulate_tlb(addrs[:1], lk, cfg, kernel_page_shift=12)
    with pytest.raises(ValueError, match="TlbConfig"):
        simulate_tlb(addrs, lk, {"l1": {}}, kernel_page_shift=12)
    bad = replace(lk, leaf_shift=np.array([11, 12], np.int8))
    with pytest.raises(ValueError, match="access 0 .* base_shift <= leaf_shift"):
        simulate_tlb(addrs, bad, cfg, kernel_page_shift=12)


@pytest.mark.parametrize("entries", [9, 48, 64])
@pytest.mark.parametrize("lru", [True, False])
def test_fully_associative_fast_path_equals_way_scan(entries, lru):
    """fa_access (hash + recency list, used for fully associative structures wider than
    FA_SCAN_MAX_WAYS) evicts exactly what the row scan evicts, access by access."""
    from kernel_model.tlb_cache import HIT, cache_access, cache_new, fa_access, fa_new

    rng = np.random.default_rng(entries)
    # keys sharing low bits and high bits, so the hash collides and deletions shift
    tags = np.concatenate([rng.integers(0, 3 * entries, 4000), rng.integers(0, 40, 2000) << 40])
    rng.shuffle(tags)
    fa = fa_new(entries)
    scan_state = cache_new(1, entries)
    fast, scan = [], []
    for tag in tags.tolist():
        fast.append(int(fa_access(*fa, tag, lru)))
        scan.append(int(cache_access(scan_state, 0, tag, lru)))
    assert fast == scan
    assert fast.count(HIT) > 100 and len(set(fast)) > entries  # hits and many distinct evictions
    assert sorted(fa[0].tolist()) == sorted(scan_state[0].tolist())


def test_with_real_pgtable_lookup():
    """The Lookup of kernel_model.pgtable, 4K kernel, contpte on.
    # VA / 64K      0  1  2  3  4  5  6  7  8
    #                  F        U           .    F: 64K folio, PA aligned -> folded (one entry)
    #                                            U: 64K folio at pfn 0x201 -> 16 plain PTEs
    #                                            .: hole (not present)
    Each of the 16 pages of F and U is touched once, then the hole.
    """
    from kernel_model.geometry import geometry
    from kernel_model.mm_types import PROT_READ, PROT_WRITE
    from kernel_model.pgtable import PageTable

    pt = PageTable(geometry("4K"), contpte=True)
    pt.set_ptes(0x10000, 0x100, 16, PROT_READ | PROT_WRITE, folio_pfn=0x100, folio_nr=16)
    pt.set_ptes(0x40000, 0x201, 16, PROT_READ | PROT_WRITE, folio_pfn=0x201, folio_nr=16)
    pages = np.arange(16, dtype=np.int64) << 12
    addrs = np.concatenate([0x10000 + pages, 0x40000 + pages, [0x80000]])
    res = simulate_tlb(addrs, pt.lookup(addrs), load_cfg("neoverse_n1"), kernel_page_shift=12)
    # misses: 1 (F) + 16 (U) + 1 (hole); walks after the first hit the PMD descriptor in
    # the walk cache and read only the PTE; PTE lines read: F's (index 16-31: line 2),
    # U's (64-79: lines 8, 9), the hole's (128: line 16), plus 3 upper-level lines.
    assert [res[k] for k in ("l1_tlb_misses", "l2_tlb_misses", "walks", "walk_mem_refs",
                             "tlb_walk_cache_hits", "tlb_pgtable_l1d_misses", "tlb_not_present")] == \
        [18, 18, 18, 4 + 17, 17, 7, 1]
    split = simulate_tlb(addrs, pt.lookup(addrs), load_cfg("neoverse_n1", coalesce_contig=False),
                         kernel_page_shift=12)
    assert split["l1_tlb_misses"] == 33


def test_negative_address_and_missing_pfn_are_rejected():
    cfg = load_cfg("tiny")
    addrs = np.array([0, 4096], dtype=np.int64)
    lk = make_lookup(addrs)
    with pytest.raises(ValueError, match="access 1 .*addresses must be >= 0"):
        simulate_tlb(np.array([0, -4096]), lk, cfg, kernel_page_shift=12)
    with pytest.raises(ValueError, match="access 1 .*pfn -1"):
        simulate_tlb(addrs, replace(lk, pfn=np.array([5, -1])), cfg, kernel_page_shift=12)


@pytest.mark.parametrize("l1, l2", [
    ({"entries": 8, "ways": 2, "latency": 1}, {"entries": 32, "ways": 32, "latency": 3}),
    ({"entries": 12, "ways": 12, "latency": 1}, {"entries": 24, "ways": 3, "latency": 3}),
])
def test_reference_hardware_other_shapes(l1, l2):
    """Set-associative L1 with a wide fully associative L2 (the hash path for L2), and a
    12-way fully associative L1 (the hash path for L1) with a 3-way L2 of 8 sets."""
    rng = np.random.default_rng(21)
    addrs = (((rng.zipf(1.15, 5000) - 1) % 300) << 12) + (rng.integers(0, 4096, 5000) & ~7)
    lk = make_lookup(addrs)
    for replacement in ("lru", "fifo"):
        cfg = load_cfg("tiny", l1=l1, l2=l2, replacement=replacement)
        res = simulate_tlb(addrs, lk, cfg, kernel_page_shift=12)
        ref = reference_hardware(addrs, lk, cfg, 12)
        assert {k: res[k] for k in ref} == ref
        assert 0 < res["l2_tlb_misses"] < res["l1_tlb_misses"] < 5000


def test_walk_work_orders_64k_16k_4k_on_real_tables():
    """The thread's claim (fewer levels, more walk-cache reach, smaller page-table
    footprint) as the model sees it: random accesses over 256M mapped with base pages in
    each granule cost 64K < 16K < 4K in walk memory references and walk cycles."""
    from kernel_model.geometry import geometry
    from kernel_model.mm_types import PROT_READ, PROT_WRITE
    from kernel_model.pgtable import PageTable

    rng = np.random.default_rng(1)
    base, span = 1 << 32, 256 << 20
    addrs = base + (rng.integers(0, span, 40_000) & ~7)
    cfg = load_cfg("neoverse_n1")
    refs, cycles = [], []
    for size in ("64K", "16K", "4K"):
        geom = geometry(size)
        pt = PageTable(geom)
        pt.set_ptes(base, 1 << 18, span >> geom.page_shift, PROT_READ | PROT_WRITE)
        res = simulate_tlb(addrs, pt.lookup(addrs), cfg, kernel_page_shift=geom.page_shift)
        refs.append(res["walk_mem_refs"])
        cycles.append(res["walk_cycles"])
    assert refs == sorted(refs) and len(set(refs)) == 3
    assert cycles == sorted(cycles) and len(set(cycles)) == 3


def _split(lk, lo, hi):
    return FakeLookup(lk.present[lo:hi], lk.pfn[lo:hi], lk.base_shift[lo:hi], lk.leaf_shift[lo:hi],
                      lk.desc_addr[lo:hi])


@pytest.mark.parametrize("cut", [1, 4999, 15000])
def test_a_stream_in_pieces_with_one_state_counts_as_one_stream(cut):
    """TlbState carries the hardware across calls: two calls give the one call's counts,
    while a fresh state per call (a cold core) gives more misses."""
    from kernel_model.tlb import TlbState

    cfg = load_cfg("neoverse_n1")
    addrs = stream("zipf", 30000, 3000, seed=5)
    lk = make_lookup(addrs)
    whole = simulate_tlb(addrs, lk, cfg, kernel_page_shift=12)
    state = TlbState(cfg)
    a = simulate_tlb(addrs[:cut], _split(lk, 0, cut), cfg, kernel_page_shift=12, state=state)
    b = simulate_tlb(addrs[cut:], _split(lk, cut, None), cfg, kernel_page_shift=12, state=state)
    assert {k: a[k] + b[k] for k in whole} == whole
    cold = simulate_tlb(addrs[cut:], _split(lk, cut, None), cfg, kernel_page_shift=12)
    assert cold["l1_tlb_misses"] >= b["l1_tlb_misses"]
    if cut > 1:
        assert cold["l2_tlb_misses"] > b["l2_tlb_misses"]


def test_flush_tlb_keeps_the_data_caches():
    from kernel_model.tlb import TlbState

    cfg = load_cfg("neoverse_n1")
    addrs = stream("sequential", 2000, 200, seed=1)
    lk = make_lookup(addrs)
    state = TlbState(cfg)
    simulate_tlb(addrs, lk, cfg, kernel_page_shift=12, state=state)
    state.flush_tlb()
    again = simulate_tlb(addrs, lk, cfg, kernel_page_shift=12, state=state)
    cold = simulate_tlb(addrs, lk, cfg, kernel_page_shift=12)
    # The stream cycles 200 pages in order, 10 passes: a 48-entry LRU L1 misses every one
    # of the 2000 accesses, and the 200 pages land in 200 distinct sets of the 256-set L2
    # (tag % 256), so the L2 misses each page once per empty TLB: 200, after a flush too.
    assert again["l1_tlb_misses"] == cold["l1_tlb_misses"] == 2000
    assert again["l2_tlb_misses"] == cold["l2_tlb_misses"] == 200
    assert again["tlb_data_l1d_misses"] < cold["tlb_data_l1d_misses"]
