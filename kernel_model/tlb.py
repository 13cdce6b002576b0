"""The translation hardware: L1 dTLB, L2 TLB, walk cache, page-table lines in L1D/L2D.

This is "the hardware" of the model (docs/design.md: tlb.py); the kernel counterparts that
define what it caches are:

- arch/arm64/include/asm/pgtable-hwdef.h: PTE_CONT ("Contiguous range"), the hint that
  lets the TLB hold a whole CONT_PTES run as one entry; PMD/PUD_TYPE_SECT block
  descriptors, which a TLB also holds as one entry of the block size.
- arch/arm64/mm/contpte.c: contpte_convert() flushes the TLB before folding/unfolding
  because entries of the old and new size must never coexist; the model therefore
  gives each address exactly one entry, of the size its final mapping has.

Input: the page table in its final state for the access stream, so a page first
touched during the run is simply a cold miss; either a pgtable `Lookup` of every access
(simulate_tlb) or the table itself (simulate_tlb_tables: hw_tables() arrays, walked by
the compiled loop only on an L2 TLB miss, the translation of each kernel page read once
per call through a memo; what simulate() uses).  Both give the same counts.  Output:
counts.

Entry key.  With tlb.coalesce_contig the entry of an access covers its mapping
(shift = leaf_shift: a base page, a folded contpte run or a block); without, every entry
is one base page of the walked geometry (shift = base_shift).  The tag is
addr >> shift and the set is tag % sets.  The stored key is (tag << 6) | shift: shifts
are < 64, so two entries of different sizes never compare equal even when their tags
do (a 4K entry for page 0x10 and a 64K entry for run 0x10 share tag 0x10).

Order of events per access (docs/design.md, "Facts the model encodes"):
  L1 hit -> done.  L1 miss -> L2 lookup; L2 hit -> fill L1.  L2 miss -> walk, fill L2
  and L1.  An access to a page that is not present: one L1 miss, one L2 miss, one walk
  (as far as the table goes), no fill; the fault itself is modelled in memory.py.
  Then the data access itself reads its physical line through L1D/L2D
  (tlb.model_data_lines, default on), so page-table lines compete with data.

Walk.  A walk reads the descriptors of the access top..leaf (desc_addr >= 0).  The walk
cache holds table (non-leaf) descriptors keyed by their physical address; the walk is
probed deepest level first and resumes just below the deepest hit, so a hit at the
PMD level leaves one read.  Every descriptor read is a walk memory reference served by
L1D, L2D or memory (64-byte lines, 8 descriptors each), and walk_cycles is the sum of
the load-to-use latency of the level that served each read, plus the walk-cache
lookup latency once per walk when a walk cache is configured.  The descriptor that
ends the walk (the leaf, or the invalid one of a not-present access) is never cached:
the architecture does not let a TLB or walk cache hold an entry that faults.  The A76
keeps walk results inside its L2 TLB; here the walk cache is a separate structure with
its own entries/ways (tlb.walk_cache) so that its reach can be swept on its own.

Pre-filter.  An access to the L1 TLB's most recent entry (the previous present access's)
whose data line is the most recent of its L1D set hits both and leaves every replacement
state unchanged, so the kernel skips it after two comparisons.  The keys and lines are
computed inside the kernel's single pass rather than as numpy temporaries: the only O(n)
arrays are the caller's addresses (and Lookup fields) (kernel_model/tlb_cache.py:
tlb_run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from . import tlb_cache
from .choices import TlbReplacement
from .geometry import DESC_SIZE
from .units import parse_size

REPLACEMENT_POLICIES = TlbReplacement.values()

# Shifts a leaf can have on arm64: a 4K page (12) up to a 16G contiguous 64K-granule
# PMD run (34); LPA2/52-bit VA blocks stay below 52.
MIN_SHIFT, MAX_SHIFT = 12, 52

_TOP_KEYS = {"name", "replacement", "coalesce_contig", "l1", "l2", "walk_cache",
             "l1d", "l2d", "line_size", "mem_latency", "model_data_lines"}


def _int(value, what, *, minimum=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what}: expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what}: must be >= {minimum}, got {value}")
    return int(value)


def _section(cfg, key):
    sec = cfg.get(key)
    if not isinstance(sec, Mapping):
        raise ValueError(f"tlb.{key}: expected a mapping such as "
                         f"{{entries: 48, ways: 48, latency: 1}}, got {sec!r}")
    return sec


def _check_keys(sec, allowed, where):
    unknown = set(sec) - set(allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    missing = set(allowed) - set(sec)
    if missing:
        raise ValueError(f"{where}: missing key(s) {sorted(missing)}")


@dataclass(frozen=True)
class TlbLevel:
    """A TLB-like structure of `entries` in sets of `ways` (ways == entries: fully
    associative).  entries == 0 disables it (allowed for the walk cache only)."""

    entries: int
    ways: int
    latency: int

    @property
    def sets(self) -> int:
        return self.entries // self.ways if self.entries else 0

    @classmethod
    def from_cfg(cls, sec, where, *, allow_empty=False):
        _check_keys(sec, ("entries", "ways", "latency"), where)
        entries = _int(sec["entries"], f"{where}.entries", minimum=0 if allow_empty else 1)
        ways = _int(sec["ways"], f"{where}.ways", minimum=1)
        latency = _int(sec["latency"], f"{where}.latency")
        if entries and (ways > entries or entries % ways):
            raise ValueError(f"{where}: entries ({entries}) must be a multiple of ways ({ways}); "
                             f"use ways == entries for a fully associative structure")
        return cls(entries, ways, latency)


@dataclass(frozen=True)
class DataCache:
    """A physically indexed data cache: `size` bytes in sets of `ways` lines."""

    size: int
    ways: int
    latency: int
    line_size: int

    @property
    def lines(self) -> int:
        return self.size // self.line_size

    @property
    def sets(self) -> int:
        return self.lines // self.ways

    @classmethod
    def from_cfg(cls, sec, where, line_size):
        _check_keys(sec, ("size", "ways", "latency"), where)
        size = parse_size(sec["size"], what=f"{where}.size")
        ways = _int(sec["ways"], f"{where}.ways", minimum=1)
        latency = _int(sec["latency"], f"{where}.latency")
        if size == 0 or size % (line_size * ways):
            raise ValueError(f"{where}: size ({size}) must be a positive multiple of "
                             f"line_size * ways ({line_size} * {ways})")
        return cls(size, ways, latency, line_size)


@dataclass(frozen=True)
class TlbConfig:
    """cfg.tlb as the model uses it (conf/tlb/*.yaml documents each key)."""

    name: str
    replacement: str
    coalesce_contig: bool
    l1: TlbLevel
    l2: TlbLevel
    walk_cache: TlbLevel
    l1d: DataCache
    l2d: DataCache
    line_size: int
    mem_latency: int
    model_data_lines: bool = True

    @property
    def line_shift(self) -> int:
        return self.line_size.bit_length() - 1

    @classmethod
    def from_cfg(cls, cfg_tlb) -> "TlbConfig":
        """Build from the tlb config group (a dict or an OmegaConf DictConfig).

        Every key of conf/tlb/neoverse_n1.yaml is required; model_data_lines is
        optional (default true).
        """
        if hasattr(cfg_tlb, "_metadata"):  # an OmegaConf node
            from omegaconf import OmegaConf
            cfg_tlb = OmegaConf.to_container(cfg_tlb, resolve=True)
        if not isinstance(cfg_tlb, Mapping):
            raise ValueError(f"tlb: expected a mapping (the tlb config group), got {cfg_tlb!r}")
        unknown = set(cfg_tlb) - _TOP_KEYS
        if unknown:
            raise ValueError(f"tlb: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
        missing = _TOP_KEYS - {"model_data_lines"} - set(cfg_tlb)
        if missing:
            raise ValueError(f"tlb: missing key(s) {sorted(missing)} (see conf/tlb/neoverse_n1.yaml)")
        replacement = cfg_tlb["replacement"]
        if replacement not in REPLACEMENT_POLICIES:
            raise ValueError(f"tlb.replacement: {replacement!r} is not allowed; "
                             f"allowed: {', '.join(REPLACEMENT_POLICIES)}")
        for flag in ("coalesce_contig", "model_data_lines"):
            if flag in cfg_tlb and not isinstance(cfg_tlb[flag], bool):
                raise ValueError(f"tlb.{flag}: expected true or false, got {cfg_tlb[flag]!r}")
        line_size = _int(cfg_tlb["line_size"], "tlb.line_size", minimum=DESC_SIZE)
        if line_size & (line_size - 1):
            raise ValueError(f"tlb.line_size: {line_size} is not a power of two")
        return cls(
            name=str(cfg_tlb["name"]),
            replacement=replacement,
            coalesce_contig=cfg_tlb["coalesce_contig"],
            l1=TlbLevel.from_cfg(_section(cfg_tlb, "l1"), "tlb.l1"),
            l2=TlbLevel.from_cfg(_section(cfg_tlb, "l2"), "tlb.l2"),
            walk_cache=TlbLevel.from_cfg(_section(cfg_tlb, "walk_cache"), "tlb.walk_cache",
                                         allow_empty=True),
            l1d=DataCache.from_cfg(_section(cfg_tlb, "l1d"), "tlb.l1d", line_size),
            l2d=DataCache.from_cfg(_section(cfg_tlb, "l2d"), "tlb.l2d", line_size),
            line_size=line_size,
            mem_latency=_int(cfg_tlb["mem_latency"], "tlb.mem_latency"),
            model_data_lines=cfg_tlb.get("model_data_lines", True),
        )


def _lookup_arrays(addrs, lookup):
    """Validated (addrs, present, pfn, base_shift, leaf_shift, desc) from a Lookup."""
    addrs = np.asarray(addrs)
    if addrs.ndim != 1 or not np.issubdtype(addrs.dtype, np.integer):
        raise ValueError(f"simulate_tlb: addrs must be a 1-D integer array, got "
                         f"shape {addrs.shape} dtype {addrs.dtype}")
    addrs = addrs.astype(np.int64, copy=False)
    n = addrs.shape[0]
    arrays = {}
    for name in ("present", "pfn", "base_shift", "leaf_shift", "desc_addr"):
        if not hasattr(lookup, name):
            raise ValueError(f"simulate_tlb: lookup has no field {name!r} (a pgtable Lookup is expected)")
        arrays[name] = np.asarray(getattr(lookup, name))
        if arrays[name].shape[:1] != (n,):
            raise ValueError(f"simulate_tlb: lookup.{name} has {arrays[name].shape[:1]} rows, "
                             f"addrs has {n}; look up exactly the accessed addresses")
    desc = arrays["desc_addr"]
    if desc.ndim != 2 or desc.shape[1] < 1:
        raise ValueError(f"simulate_tlb: lookup.desc_addr must be int64[n, levels], got shape {desc.shape}")
    desc = np.ascontiguousarray(desc, dtype=np.int64)
    present = arrays["present"].astype(np.bool_, copy=False)
    pfn = arrays["pfn"].astype(np.int64, copy=False)
    base_shift = arrays["base_shift"].astype(np.int8, copy=False)
    leaf_shift = arrays["leaf_shift"].astype(np.int8, copy=False)
    bad = tlb_cache.lookup_first_bad(addrs, present, pfn, base_shift, leaf_shift, MIN_SHIFT, MAX_SHIFT)
    if bad >= 0:
        raise ValueError(
            f"simulate_tlb: access {bad} (addr {int(addrs[bad]):#x}, present {bool(present[bad])}, "
            f"pfn {int(pfn[bad])}, base_shift {int(base_shift[bad])}, leaf_shift {int(leaf_shift[bad])}) "
            f"is invalid: addresses must be >= 0 and a present access needs pfn >= 0 and "
            f"{MIN_SHIFT} <= base_shift <= leaf_shift <= {MAX_SHIFT}")
    return addrs, present, pfn, base_shift, leaf_shift, desc


def _kernel_params(cfg: TlbConfig, kernel_page_shift: int) -> np.ndarray:
    c = tlb_cache
    p = np.zeros(c.NR_PARAMS, dtype=np.int64)
    p[c.P_L1_SETS], p[c.P_L1_WAYS] = cfg.l1.sets, cfg.l1.ways
    p[c.P_L2_SETS], p[c.P_L2_WAYS] = cfg.l2.sets, cfg.l2.ways
    p[c.P_WC_SETS], p[c.P_WC_WAYS] = cfg.walk_cache.sets, cfg.walk_cache.ways
    p[c.P_LRU] = cfg.replacement == "lru"
    p[c.P_D1_SETS], p[c.P_D1_WAYS] = cfg.l1d.sets, cfg.l1d.ways
    p[c.P_D2_SETS], p[c.P_D2_WAYS] = cfg.l2d.sets, cfg.l2d.ways
    p[c.P_WC_LATENCY], p[c.P_D1_LATENCY] = cfg.walk_cache.latency, cfg.l1d.latency
    p[c.P_D2_LATENCY], p[c.P_MEM_LATENCY] = cfg.l2d.latency, cfg.mem_latency
    p[c.P_COALESCE] = cfg.coalesce_contig
    p[c.P_DATA_LINES] = cfg.model_data_lines
    p[c.P_KERNEL_PAGE_SHIFT] = kernel_page_shift
    p[c.P_LINE_SHIFT] = cfg.line_shift
    return p


class TlbState:
    """The translation hardware's contents (TLBs, walk cache, L1D/L2D) for one TlbConfig,
    carried from one simulate_tlb() call to the next, as a core keeps them between two
    stretches of one program's accesses. `flush_tlb()` empties the TLBs and the walk cache
    (a switch to another address space) and keeps the data caches."""

    def __init__(self, cfg: TlbConfig):
        if not isinstance(cfg, TlbConfig):
            raise ValueError(f"TlbState: cfg must be a TlbConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.arrays = tlb_cache.tlb_state_new(_kernel_params(cfg, 0))

    def flush_tlb(self) -> None:
        fresh = tlb_cache.tlb_state_new(_kernel_params(self.cfg, 0))
        a = self.arrays
        for tlb in (a.l1, a.l2, a.walk_cache):  # views of the flat rows
            tlb.fill(tlb_cache.EMPTY)
        self.arrays = a._replace(fa_l1=fresh.fa_l1, fa_l2=fresh.fa_l2)


def _no_tables() -> tlb_cache.HwTables:
    """A placeholder of hw_tables()'s types for a tlb_run over Lookup arrays."""
    i64, b = np.zeros(1, np.int64), np.zeros(1, np.bool_)
    tab = tlb_cache.WalkTables(geo=i64, nxt=np.zeros(1, np.int32), phys=i64, bpfn=i64, bcont=b, leaf_slot=i64,
                               leaf_pfn=np.zeros((1, 1), np.int64), leaf_cont=np.zeros((1, 1), np.bool_))
    return tlb_cache.HwTables(primary=tab, secondary=tab, fallback=np.zeros(0, np.int64),
                              params=np.array([0, MIN_SHIFT, MIN_SHIFT, 1], np.int64))


_NO_ADDRS = np.zeros(0, np.int64)
_NO_RECORDS = np.zeros((0, 9), np.uint8)
_NO_RECORDS.flags.writeable = False
_NO_LOOKUP = (np.zeros(0, np.bool_), np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int8),
              np.zeros((0, 1), np.int64))
_NO_KEYS = np.zeros((0, 1), np.int64)  # tlb_run's wkey: the walk cache keyed by the descriptors themselves
_NO_MEMO = tlb_cache.memo_new(1)  # tlb_run's memo over Lookup arrays (unused)


class TableMemo:
    """What simulate_tlb_tables()/simulate_tlb_records() have read from one table for one
    TlbConfig (tlb_cache.memo_new: each kernel page's translation and TLB key), for a
    caller that makes several calls over the same table while it does not change: each
    kernel page is then walked once for all of them. `entries`: about how many kernel pages
    the stream touches (the memo is direct-mapped; at most 2**tlb_cache.MEMO_BITS)."""

    def __init__(self, tables: tlb_cache.HwTables, cfg: TlbConfig, entries: int):
        self.tables, self.cfg = tables, cfg
        self.array = tlb_cache.memo_new(max(1, int(entries)))


def _memo(memo: TableMemo | None, tables, cfg: TlbConfig, n: int) -> np.ndarray:
    if memo is None:  # no larger than the stream: a short phase does not pay for a big memo
        return tlb_cache.memo_new(n)
    if memo.tables is not tables or memo.cfg is not cfg:
        raise ValueError("simulate_tlb: memo was made for another table or TlbConfig "
                         "(one TableMemo per hw_tables() and config)")
    return memo.array


def _run_args(cfg: TlbConfig, kernel_page_shift, is_write, n: int, state):
    """Checked (params, state, write count) shared by both entry points."""
    if not isinstance(cfg, TlbConfig):
        raise ValueError(f"simulate_tlb: cfg must be a TlbConfig (TlbConfig.from_cfg(cfg.tlb)), got {type(cfg).__name__}")
    writes = 0
    if is_write is not None:
        is_write = np.asarray(is_write)
        if is_write.shape != (n,):
            raise ValueError(f"simulate_tlb: is_write must have shape ({n},), got {is_write.shape}")
        writes = int(np.count_nonzero(is_write))
    kps = 0
    if cfg.model_data_lines:
        if kernel_page_shift is None:
            raise ValueError("simulate_tlb: pass kernel_page_shift= (the kernel's PAGE_SHIFT, the unit "
                             "of lookup.pfn) to place data lines, or set tlb.model_data_lines: false")
        kps = _int(kernel_page_shift, "kernel_page_shift", minimum=MIN_SHIFT)
    if state is None:
        state = TlbState(cfg)
    elif state.cfg is not cfg:
        raise ValueError("simulate_tlb: state was made for another TlbConfig")
    return _kernel_params(cfg, kps), state, writes


def _results(out, n: int, writes: int, cfg: TlbConfig) -> dict:
    c = tlb_cache
    res = {
        "accesses": n,
        "l1_tlb_misses": int(out[c.C_L1_MISS]),
        "l2_tlb_misses": int(out[c.C_L2_MISS]),
        "walks": int(out[c.C_WALKS]),
        "walk_mem_refs": int(out[c.C_WALK_REFS]),
        "walk_cycles": int(out[c.C_WALK_CYCLES]),
        "tlb_walk_cache_hits": int(out[c.C_WC_HITS]),
        "tlb_pgtable_l1d_misses": int(out[c.C_PT_L1D_MISS]),
        "tlb_pgtable_l2d_misses": int(out[c.C_PT_L2D_MISS]),
        "tlb_data_l1d_misses": int(out[c.C_DATA_L1D_MISS]),
        "tlb_data_l2d_misses": int(out[c.C_DATA_L2D_MISS]),
        "tlb_not_present": int(out[c.C_NOT_PRESENT]),
        "tlb_write_accesses": writes,
    }
    res["tlb_cycles"] = (n * cfg.l1.latency + res["l1_tlb_misses"] * cfg.l2.latency
                         + res["walk_cycles"])
    return res


def simulate_tlb(addrs, lookup, cfg: TlbConfig, *, kernel_page_shift=None, is_write=None,
                 state: TlbState | None = None, walk_cache_keys=None) -> dict:
    """Translate the access stream `addrs` whose final-state walks are `lookup`.

    kernel_page_shift: the kernel's PAGE_SHIFT (the unit of lookup.pfn); needed to
    place data lines when cfg.model_data_lines.  is_write: optional bool[n]; reads and
    writes translate alike (the caches are write-allocate), so it only feeds
    tlb_write_accesses.

    Returns ints: accesses, l1_tlb_misses, l2_tlb_misses, walks, walk_mem_refs,
    walk_cycles (docs/design.md metrics) and extras prefixed tlb_: walk_cache_hits,
    pgtable_l1d_misses, pgtable_l2d_misses (page-table lines not in L1D / L2D),
    data_l1d_misses, data_l2d_misses, not_present, write_accesses, and tlb_cycles =
    accesses * l1.latency + l1_tlb_misses * l2.latency + walk_cycles.

    state: a TlbState to start from and leave the hardware's contents in (None: start
    empty, as one call on a cold core).

    walk_cache_keys: None (the walk cache holds table descriptors by their address, as in
    hardware), or int64 of lookup.desc_addr's shape: the key the walk cache files each
    descriptor read under (kernel_model/ablation.py: one system's walks with another's
    walk-cache reach).
    """
    if not isinstance(cfg, TlbConfig):
        raise ValueError(f"simulate_tlb: cfg must be a TlbConfig (TlbConfig.from_cfg(cfg.tlb)), got {type(cfg).__name__}")
    addrs, present, pfn, base_shift, leaf_shift, desc = _lookup_arrays(addrs, lookup)
    n = addrs.shape[0]
    wkey = _NO_KEYS
    if walk_cache_keys is not None:
        wkey = np.ascontiguousarray(walk_cache_keys, dtype=np.int64)
        if wkey.shape != desc.shape:
            raise ValueError(f"simulate_tlb: walk_cache_keys has shape {wkey.shape}, lookup.desc_addr {desc.shape}; "
                             "give one key per descriptor")
    params, state, writes = _run_args(cfg, kernel_page_shift, is_write, n, state)
    out = tlb_cache.tlb_run(addrs, _NO_RECORDS, present, pfn, base_shift, leaf_shift, desc, wkey, params, state.arrays,
                            _no_tables(), _NO_MEMO)
    return _results(out, n, writes, cfg)


def simulate_tlb_tables(addrs, tables, cfg: TlbConfig, *, kernel_page_shift=None, is_write=None,
                        state: TlbState | None = None, memo: TableMemo | None = None) -> dict:
    """simulate_tlb() over the page table itself instead of a Lookup of every access:
    `tables` is table.hw_tables() (a PageTable, or a NativePageTable after build_spans()
    of the spans walked). Walks only on an L2 TLB miss; the same result as
    simulate_tlb(addrs, table.lookup(addrs) / hw_lookup(addrs), ...). addrs must lie in
    the table's VA range (the caller's check; a negative one is refused here). memo: a
    TableMemo of `tables` to reuse across calls over the unchanged table (None: a new one)."""
    addrs = np.asarray(addrs)
    if addrs.ndim != 1 or not np.issubdtype(addrs.dtype, np.integer):
        raise ValueError(f"simulate_tlb: addrs must be a 1-D integer array, got "
                         f"shape {addrs.shape} dtype {addrs.dtype}")
    addrs = np.ascontiguousarray(addrs, np.int64)
    n = addrs.shape[0]
    params, state, writes = _run_args(cfg, kernel_page_shift, is_write, n, state)
    if n and int(addrs.min()) < 0:
        raise ValueError(f"simulate_tlb: address {int(addrs.min())} is negative")
    params[tlb_cache.P_TABLES] = 1
    out = tlb_cache.tlb_run(addrs, _NO_RECORDS, *_NO_LOOKUP, _NO_KEYS, params, state.arrays, tables,
                            _memo(memo, tables, cfg, n))
    return _results(out, n, writes, cfg)


def simulate_tlb_records(raw, tables, cfg: TlbConfig, *, kernel_page_shift=None,
                         state: TlbState | None = None, memo: TableMemo | None = None) -> dict:
    """simulate_tlb_tables() of the accesses of a compact trace's records, read from their
    bytes `raw` (a workloads.trace.RecordWindow's uint8[k, 9], whose addresses and write
    bytes the caller has validated; is_write is the record's byte). memo: as there."""
    if not (isinstance(raw, np.ndarray) and raw.dtype == np.uint8 and raw.ndim == 2 and raw.shape[1] == 9):
        raise ValueError(f"simulate_tlb_records: raw must be uint8[k, 9] records, got "
                         f"shape {getattr(raw, 'shape', None)} dtype {getattr(raw, 'dtype', None)}")
    if raw.flags.writeable:  # one compiled signature: record windows are read-only
        raw = raw.view()
        raw.flags.writeable = False
    n = raw.shape[0]
    params, state, _ = _run_args(cfg, kernel_page_shift, None, n, state)
    params[tlb_cache.P_TABLES] = 1
    out = tlb_cache.tlb_run(_NO_ADDRS, raw, *_NO_LOOKUP, _NO_KEYS, params, state.arrays, tables,
                            _memo(memo, tables, cfg, n))
    return _results(out, n, int(out[tlb_cache.C_WRITES]), cfg)


__all__ = ["TlbConfig", "TlbLevel", "DataCache", "TlbState", "TableMemo", "simulate_tlb", "simulate_tlb_tables",
           "simulate_tlb_records",
           "REPLACEMENT_POLICIES"]
