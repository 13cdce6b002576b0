"""The metric registry: every metric simulate() returns, with its unit, which direction is
better, and whether a row may lack it. One place for what the model emits (simulate.py's
METRIC_NAMES), what a regression is (sweep/nightly.py) and how a report reads a missing
value (sweep/report/), declared together as Ray Tune declares a metric with its mode.

better: "lower" (a cost: misses, walks, cycles, bytes, faults, failures), "higher" (a
success count) or "exact" (fixed by the workload: any change is a regression).
A *family* is a prefix followed by an event, folio order or rule name; a *sparse* family
is emitted only when non-zero, so a cell row without it reads 0.
"""

from __future__ import annotations

from dataclasses import dataclass

BETTER = ("lower", "higher", "exact")


@dataclass(frozen=True)
class Metric:
    name: str               # the metric, or the prefix of a family
    unit: str               # "count", "bytes", "cycles", "pages", "entries", "files"
    better: str = "lower"
    contract: bool = False  # in the metric contract: every cell emits it (0 when nothing happened)
    family: bool = False    # name is a prefix: name + event / order / rule
    sparse: bool = False    # a family emitted only when non-zero: absent reads 0

    def __post_init__(self):
        if self.better not in BETTER:
            raise ValueError(f"metric {self.name}: better={self.better!r}; allowed: {', '.join(BETTER)}")
        if self.sparse and not self.family:
            raise ValueError(f"metric {self.name}: only a family (a prefix) may be sparse")


def _contract(name, unit, better="lower"):
    return Metric(name, unit, better, contract=True)


METRICS = (
    # The contract, in the order simulate() lays out a row.
    _contract("accesses", "count", "exact"),
    _contract("l1_tlb_misses", "count"),
    _contract("l2_tlb_misses", "count"),
    _contract("walks", "count"),
    _contract("walk_mem_refs", "count"),
    _contract("walk_cycles", "cycles"),
    _contract("faults", "count"),
    _contract("pgtable_bytes_linux", "bytes"),
    _contract("pgtable_bytes_native", "bytes"),
    _contract("anon_bytes", "bytes"),
    _contract("pagecache_bytes", "bytes"),
    _contract("padding_bytes", "bytes"),
    _contract("total_bytes", "bytes"),
    _contract("sigbus", "count"),
    _contract("native_fallbacks", "count"),
    _contract("compaction_migrated_pages", "pages"),
    _contract("alloc_failures", "count"),
    _contract("elf_files", "files", "exact"),
    _contract("elf_ok", "files", "higher"),
    _contract("elf_failed", "files"),
    # Emitted by every cell beside the contract.
    Metric("tlb_cycles", "cycles"),
    Metric("tlb_data_l1d_misses", "count"),
    Metric("tlb_data_l2d_misses", "count"),
    Metric("tlb_pgtable_l1d_misses", "count"),
    Metric("tlb_pgtable_l2d_misses", "count"),
    Metric("tlb_walk_cache_hits", "count"),
    Metric("tlb_not_present", "count"),
    Metric("tlb_write_accesses", "count"),
    Metric("pagemap_pfn_unit_mismatch", "entries"),
    Metric("pagecache_eof_waste_bytes", "bytes"),
    Metric("pagecache_conversions", "count"),
    Metric("pagecache_conversion_failures", "count"),
    Metric("pagecache_evictions", "count"),
    Metric("pagecache_livelocks_avoided", "count"),
    Metric("pagecache_order_conflicts", "count"),
    Metric("bounce_bytes", "bytes"),
    Metric("native_rebuilds", "count"),
    Metric("native_invalidations", "count"),
    Metric("native_reclaimed_bytes", "bytes"),
    Metric("sigsegv", "count"),
    Metric("tail_touches", "count"),
    Metric("pagemap_entries", "entries"),
    Metric("pagemap_present", "entries"),
    Metric("uffd_copies", "count"),
    Metric("uffd_kernel_pages", "pages"),
    # Families.
    Metric("pagecache_folios_order_", "count", family=True),         # every order up to the page cache's max
    Metric("ev_", "count", family=True, sparse=True),                # the system's event counters
    Metric("anon_folios_order_", "count", family=True, sparse=True),  # allocated anon folios by order
    Metric("elf_failed_", "files", family=True, sparse=True),        # ELF load failures by rule
    # gap_attribution cells only (kernel_model/ablation.py): walk cycles per ablation subset
    Metric("ablate_walk_cycles_", "cycles", family=True),
)

_EXACT = {m.name: m for m in METRICS if not m.family}
_FAMILIES = tuple(m for m in METRICS if m.family)

# The contract names, in row order; simulate() starts each row from these at 0.
METRIC_NAMES = tuple(m.name for m in METRICS if m.contract)
# Prefixes of the metrics emitted only when non-zero.
SPARSE_PREFIXES = tuple(m.name for m in _FAMILIES if m.sparse)


def lookup(name: str) -> Metric | None:
    """The registry entry of a metric name (exact, else its family), or None."""
    if name in _EXACT:
        return _EXACT[name]
    return next((m for m in _FAMILIES if name.startswith(m.name)), None)


def better(name: str) -> str:
    """Which direction is better for ``name``; a column the registry does not know is a cost."""
    m = lookup(name)
    return m.better if m is not None else "lower"
