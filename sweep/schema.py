"""The typed config schema (Hydra structured configs) and the validation pass.

Two layers catch a bad config before anything runs:

- composition: every group merges into the dataclasses below, registered in Hydra's
  ConfigStore as ``base_config``; a misspelt key, a value of the wrong type or one an
  Enum-typed field (kernel_model/choices.py) does not allow fails there, naming the key;
- per cell (sweep/plan.py): ``validate_values()`` checks allowed values (enumerations,
  sizes, ranges, TLB and cache shapes by kernel_model/tlb.py's parser),
  ``resolve_workload_path()`` that workload.path exists,
  and ``check_page_size_order()`` the rule between keys (process page size >= kernel
  page size), each raising ConfigError whose text names the key and what is allowed.

Field names are the config contract of docs/design.md.
"""

import dataclasses
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore

from kernel_model.choices import AnonPolicy, NativePgtable, Overhang, PagecachePolicy, TlbReplacement, choices
from kernel_model.geometry import VA_BITS_MAX, VA_BITS_MIN
from kernel_model.metrics import BETTER
from kernel_model.metrics import lookup as lookup_metric
from kernel_model.page_alloc import MAX_ORDER_FOR
from kernel_model.tlb import TlbConfig
from kernel_model.units import format_size, parse_page_size, parse_size
from workloads.config import WorkloadKind, WorkloadPattern


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key and what to fix."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def describe_compose_error(e: BaseException) -> str:
    """One line naming what to fix, for an exception Hydra raised composing the config
    (an unknown key or group option, a value of the wrong type, an unparsable override)."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(e, MissingConfigException) and e.options and e.missing_cfg_file:
        group, _, name = str(e.missing_cfg_file).rpartition("/")
        return f"{group or 'config'}: no config named {name!r}; allowed values: " + ", ".join(e.options)
    cause = e.__cause__
    key = getattr(cause, "full_key", None)
    if key:
        if enum_error(cause):
            return enum_error(cause)
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            return f"{key}: not in the config; check the spelling (or prefix + to add a new key)"
        return f"{key}: {_lines(cause)[0]}"
    lines = _lines(e)
    if isinstance(e, OverrideParseException):
        return f"{e.override}: cannot parse it ({lines[1] if len(lines) > 1 else lines[0]})"
    return " ".join(lines[:2]) if lines else type(e).__name__


def enum_error(e: BaseException) -> str | None:
    """The validation pass's one line for a value an Enum-typed field refused while OmegaConf
    merged it ("key: 'x' is not allowed; allowed values: ..."); None for any other error."""
    from omegaconf import EnumNode
    from omegaconf.errors import ValidationError

    node = getattr(e, "child_node", None)
    if not isinstance(e, ValidationError) or not isinstance(node, EnumNode):
        return None
    allowed = ", ".join(m.name for m in node.enum_type)
    return f"{e.full_key}: {str(e.value)!r} is not allowed; allowed values: {allowed}"


def _lines(e: BaseException) -> list:
    return [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]


@dataclass
class KernelConf:
    page_size: str = "4K"          # 4K | 16K | 64K, or bytes
    va_bits: int = 48


@dataclass
class ProcessConf:
    page_size: str = "kernel"      # PROCESS_PAGE_SIZES, or bytes; >= kernel.page_size


@dataclass
class FolioConf:
    anon: AnonPolicy = AnonPolicy.base
    mthp_sizes: List[str] = field(default_factory=lambda: ["16K", "32K", "64K"])
    thp_pmd: bool = False
    pagecache: PagecachePolicy = PagecachePolicy.fixed
    readahead: str = "128K"


@dataclass
class ArchConf:
    contpte: bool = True
    native_pgtable: NativePgtable = NativePgtable.off


@dataclass
class MemoryConf:
    size: str = "8G"
    fragmentation: float = 0.0     # 0.0 .. 1.0: fraction of blocks holding one unmovable page
    fragmentation_order: Optional[int] = None  # block order polluted; null = pageblock (PMD order)


@dataclass
class AbiConf:
    overhang: Overhang = Overhang.anon_fault


@dataclass
class TlbLevelConf:
    entries: int = 48
    ways: int = 48
    latency: int = 1


@dataclass
class CacheLevelConf:
    size: str = "64K"
    ways: int = 4
    latency: int = 4


@dataclass
class TlbConf:
    # Defaults only make the schema complete; conf/tlb/*.yaml holds sourced values.
    name: str = "neoverse_n1"
    replacement: TlbReplacement = TlbReplacement.lru
    coalesce_contig: bool = True
    l1: TlbLevelConf = field(default_factory=lambda: TlbLevelConf(48, 48, 1))
    l2: TlbLevelConf = field(default_factory=lambda: TlbLevelConf(1280, 5, 3))
    walk_cache: TlbLevelConf = field(default_factory=lambda: TlbLevelConf(64, 4, 1))
    l1d: CacheLevelConf = field(default_factory=lambda: CacheLevelConf("64K", 4, 4))
    l2d: CacheLevelConf = field(default_factory=lambda: CacheLevelConf("1M", 8, 11))
    line_size: int = 64
    mem_latency: int = 208
    # Data accesses occupy L1D/L2D beside page-table lines, so table footprint competes
    # with data (kernel_model/tlb.py); false = caches hold page-table lines only.
    model_data_lines: bool = True


@dataclass
class WorkloadConf:
    name: str = "random"
    kind: WorkloadKind = WorkloadKind.synthetic
    pattern: WorkloadPattern = WorkloadPattern.uniform
    working_set: str = "64M"
    accesses: int = 200000
    write_ratio: float = 0.3
    stride: str = "4K"
    zipf_alpha: float = 1.0
    path: Optional[str] = None
    max_files: Optional[int] = None
    nr_small_files: int = 0
    small_file_median: str = "2K"
    small_file_sigma: float = 1.0
    nr_large_files: int = 0
    large_file_size: str = "8M"
    mmap_fraction: float = 0.0
    large_folio_fs: bool = True
    processes: int = 1
    mlock_fraction: float = 0.0    # of mapped file pages, mlocked (pagecache_policy)
    pin_fraction: float = 0.0      # of mapped file pages, long-term pinned (pagecache_policy)
    touch_tail: bool = False       # file_set: touch each mapping's last process page past EOF (eof_overhang)
    read_before_mmap: bool = False # file_set: read() each large file before mapping it (drop_reread's case)
    map_gap: str = "1G"            # trace: touched pages at most this far apart share one VMA (0: only touched runs)


@dataclass
class AblationConf:
    # gap_attribution (kernel_model/ablation.py): the kernel page size of system B, whose
    # walk-cycle gap to this cell's kernel (system A) is split into its causes; null: no
    # ablation. A cell with it set runs cell_fn=kernel_model.ablation:simulate_ablation
    # (simulate() refuses it).
    against: Optional[str] = None  # 4K | 16K | 64K, or bytes; != kernel.page_size


@dataclass
class ResultsConf:
    dir: str = "./results"


@dataclass
class RayConf:
    address: Optional[str] = None  # None: a fresh local Ray for the run; "auto" or host:port
    num_cpus: Optional[int] = None  # local Ray only; None = all cores
    ship_code: bool = True         # a cluster gets the driver's packages as runtime_env py_modules


@dataclass
class SweepConf:
    # Values are Hydra override-grammar expressions ("4k,16k,64k", "range(0,4)",
    # "glob(*)") or plain YAML scalars (0.5, true), hence Any: sweep/plan.py parses
    # each with str() through the grammar.
    grid: Dict[str, Any] = field(default_factory=dict)
    # Each entry zips its keys (equal lengths) into one axis of the product.
    zip: List[Dict[str, Any]] = field(default_factory=list)
    # A cell matching every key of one rule is dropped (values: grammar, any-of).
    exclude: List[Dict[str, Any]] = field(default_factory=list)
    force: bool = False            # rerun cells that already have an ok row
    dry_run: bool = False          # print the plan, run nothing
    max_retries: int = 3           # Ray: re-runs of a cell whose worker died
    app_retries: int = 0           # re-runs of a cell whose function raised
    progress: bool = True          # tqdm bar with ETA


@dataclass
class ReportConf:
    # Report metadata of an experiment (sweep/report/spec.py reads it from the
    # experiment's YAML); it changes no cell, so it is a NON_SEMANTIC_KEYS entry.
    question: str = ""
    keys: List[str] = field(default_factory=list)
    metric: Optional[str] = None
    also: List[str] = field(default_factory=list)
    # lower | higher: optional, the metric registry's direction of `metric`
    # (kernel_model/metrics.py); check_report() refuses one that contradicts it
    better: Optional[str] = None


# serial: each cell in a child process; inprocess: in this process (for a debugger)
Executor = choices("Executor", "ray serial inprocess", __name__)


@dataclass
class Config:
    cell_fn: str = "kernel_model.simulate:simulate"
    seed: int = 0
    executor: Executor = Executor.ray
    kernel: KernelConf = field(default_factory=KernelConf)
    process: ProcessConf = field(default_factory=ProcessConf)
    folio: FolioConf = field(default_factory=FolioConf)
    arch: ArchConf = field(default_factory=ArchConf)
    memory: MemoryConf = field(default_factory=MemoryConf)
    abi: AbiConf = field(default_factory=AbiConf)
    tlb: TlbConf = field(default_factory=TlbConf)
    workload: WorkloadConf = field(default_factory=WorkloadConf)
    ablation: AblationConf = field(default_factory=AblationConf)
    results: ResultsConf = field(default_factory=ResultsConf)
    ray: RayConf = field(default_factory=RayConf)
    sweep: SweepConf = field(default_factory=SweepConf)
    report: ReportConf = field(default_factory=ReportConf)


# Keys that do not change what a cell computes: left out of the cell config handed to
# the cell function and out of cell_key.
NON_SEMANTIC_KEYS = ("results", "executor", "ray", "sweep", "report")


# Group defaults of conf/config.yaml whose YAML belongs to other modules' owners; the
# schema's own defaults stand in for them while the file does not exist.
FALLBACK_GROUPS = {("workload", "random"): WorkloadConf, ("tlb", "neoverse_n1"): TlbConf}


def register_configs(conf_dir=None) -> None:
    """Register the schema; conf/config.yaml lists ``base_config`` first in its defaults.

    A group default in FALLBACK_GROUPS is registered as a schema-default config only
    when conf_dir has no YAML of that name (Hydra would otherwise treat the entry as
    the YAML's schema, a deprecated automatic match).
    """
    from pathlib import Path

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for (group, name), node in FALLBACK_GROUPS.items():
        if conf_dir is None or not (Path(conf_dir) / group / f"{name}.yaml").exists():
            cs.store(group=group, name=name, node=node)


# ---- the validation pass ---------------------------------------------------------

# The process page sizes the proposal allows (a size in bytes is accepted too); not an
# Enum field, so that "16k" or 16384 compose as they do for kernel.page_size.
PROCESS_PAGE_SIZES = ("kernel", "4K", "16K", "64K")


# Fields holding a size string ("64K"); flattened to integer bytes in results.
SIZE_KEYS = (
    "kernel.page_size", "folio.readahead", "memory.size",
    "tlb.l1d.size", "tlb.l2d.size",
    "workload.working_set", "workload.stride", "workload.small_file_median",
    "workload.large_file_size", "workload.map_gap",
)

# (key, low, high) inclusive; None = unbounded.
RANGES = (
    ("memory.fragmentation", 0.0, 1.0),
    ("workload.write_ratio", 0.0, 1.0),
    ("workload.mmap_fraction", 0.0, 1.0),
    ("workload.mlock_fraction", 0.0, 1.0),
    ("workload.pin_fraction", 0.0, 1.0),
    ("kernel.va_bits", VA_BITS_MIN, VA_BITS_MAX),
    ("workload.accesses", 0, None),
    ("workload.processes", 1, None),
    ("workload.nr_small_files", 0, None),
    ("workload.nr_large_files", 0, None),
    ("sweep.max_retries", 0, None),
    ("sweep.app_retries", 0, None),
)


# Sizes that must be positive, and the unit they must be a multiple of: the rules
# workloads/config.py applies when a cell starts, checked here so that no cell is planned
# with them. (folio.readahead = 0 disables readahead and stays allowed.)
POSITIVE_SIZES = (
    ("workload.working_set", 4096),
    ("workload.stride", 8),
    ("workload.small_file_median", 1),
)

# memory.size cap. The model keeps per-frame state (struct page, buddy bitmaps) for all
# of emulated RAM, so a cell's host memory grows with memory.size / kernel page size.
# Measured on this model (peak RSS of one cell, workload.working_set=4M, 1G -> 256G):
# 1.53 MiB of host memory per GiB of memory.size at a 4K kernel, 0.37 MiB at 16K,
# 0.09 MiB at 64K (1.9 MiB at 4K with the default 256M random workload). At the cap a
# 4K cell needs about 2 GiB, so the two cells a 2-core machine runs at once fit a
# 24 GiB CI machine with room to spare; an arm64 server with more RAM than this is
# beyond what the experiments ask.
MEMORY_SIZE_MAX = 1 << 40
# Room for page tables and kernel allocations beside the anonymous working set:
# memory.size >= working set * 9/8 (measured: 64M of strided writes over a 64M working
# set fail at a 16K kernel with memory.size=64M and run at 72M).
ANON_HEADROOM = (9, 8)
# Anonymous bytes a workload maps, as multiples of workload.working_set.
ANON_WORKING_SETS = {"synthetic": 1, "mixed": 1, "abi_probe": 2}


def check_memory_size(cfg: dict) -> None:
    """memory.size holds one max-order buddy block and the anonymous working set (plus
    ANON_HEADROOM), and is at most MEMORY_SIZE_MAX."""
    size = parse_size(cfg["memory"]["size"])
    kps = page_sizes(cfg)[0]
    block = kps << MAX_ORDER_FOR.get(kps, 0)
    sets = ANON_WORKING_SETS.get(cfg["workload"]["kind"], 0)
    anon = sets * parse_size(cfg["workload"]["working_set"])
    need = -(-anon * ANON_HEADROOM[0] // ANON_HEADROOM[1])
    if size < max(block, need):
        why = (f"one max-order block of the {format_size(kps)} kernel" if block >= need else
               f"workload.working_set {cfg['workload']['working_set']}" + (" twice" if sets == 2 else "")
               + " plus 1/8 for page tables")
        raise ConfigError("memory.size", f"{cfg['memory']['size']!r} is too small; it must be at least "
                          f"{format_size(max(block, need))} ({why})")
    if size > MEMORY_SIZE_MAX:
        raise ConfigError("memory.size", f"{cfg['memory']['size']!r} is too large; at most "
                          f"{format_size(MEMORY_SIZE_MAX)} (host memory grows with memory.size: "
                          "about 1.5 MiB per GiB at a 4K kernel)")


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def page_sizes(cfg: dict) -> tuple[int, int]:
    """(kernel page size, process page size) in bytes; "kernel" resolves to the former."""
    kernel = cfg["kernel"]["page_size"]
    try:
        kps = parse_page_size(kernel, what="kernel.page_size")
    except ValueError:
        raise ConfigError("kernel.page_size", f"{kernel!r} is not allowed; allowed values: 4K, 16K, 64K "
                          "(or their sizes in bytes)") from None
    proc = cfg["process"]["page_size"]
    if str(proc) == "kernel":
        return kps, kps
    try:
        pps = parse_page_size(proc, what="process.page_size")
    except ValueError:
        raise ConfigError("process.page_size", f"{proc!r} is not allowed; allowed values: "
                          + ", ".join(PROCESS_PAGE_SIZES)) from None
    return kps, pps


def validate_values(cfg: dict) -> None:
    """Check every enumerated, sized and ranged value of one resolved config (a plain dict).

    Does not check the process/kernel page size order: see ``check_page_size_order``.
    """
    page_sizes(cfg)
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(key, f"{value!r} is not allowed; allowed values: " + ", ".join(allowed))
    for key in SIZE_KEYS:
        value = _get(cfg, key)
        try:
            parse_size(value, what=key)
        except ValueError:
            raise ConfigError(key, f"{value!r} is not a size; write e.g. 4K, 64M, 8G or bytes") from None
    for key, unit in POSITIVE_SIZES:
        n = parse_size(_get(cfg, key))
        if n <= 0 or n % unit:
            what = "positive" if unit == 1 else f"a positive multiple of {format_size(unit)}"
            raise ConfigError(key, f"{_get(cfg, key)!r} is not allowed; it must be {what}")
    check_memory_size(cfg)
    for i, size in enumerate(cfg["folio"]["mthp_sizes"]):
        try:
            n = parse_size(size)
        except ValueError:
            n = 0
        if n <= 0 or n & (n - 1):
            raise ConfigError(f"folio.mthp_sizes[{i}]", f"{size!r} is not a power-of-two size such as 16K, 64K")
    for key, low, high in RANGES:
        value = _get(cfg, key)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            raise ConfigError(key, f"{value!r} is out of range; allowed {bounds}")
    try:  # the TLB and cache shapes: kernel_model/tlb.py's own checks, run before any cell
        TlbConfig.from_cfg(cfg["tlb"])
    except ValueError as e:
        key, _, what = str(e).partition(": ")
        raise ConfigError(key, what) from None
    address = cfg["ray"]["address"]
    if address is not None and address != "auto" and ":" not in str(address):
        raise ConfigError("ray.address", f"{address!r} is not allowed; allowed values: null (local Ray), "
                          "auto, host:port")
    num_cpus = cfg["ray"]["num_cpus"]
    if num_cpus is not None and num_cpus < 1:
        raise ConfigError("ray.num_cpus", f"{num_cpus} is out of range; allowed >= 1 or null (all cores)")
    if cfg["workload"]["kind"] in PATH_KINDS and not cfg["workload"]["path"]:
        raise ConfigError("workload.path", f"workload.kind={cfg['workload']['kind']} needs a path")
    check_ablation(cfg)
    if ":" not in cfg["cell_fn"]:
        raise ConfigError("cell_fn", f"{cfg['cell_fn']!r} is not an import path; write module:function")
    check_report(cfg["report"])


# The directions a report ranks by; a metric fixed by the workload ("exact") has none.
REPORT_BETTER = tuple(b for b in BETTER if b != "exact")


def check_report(report: dict) -> str | None:
    """Check an experiment's report node against the metric registry (kernel_model/metrics.py,
    the one source of each metric's better direction) and return the direction its answer
    ranks `metric` in (None without a metric). Raises ConfigError for a metric the registry
    does not know, a metric without a direction, or a `better:` that contradicts it."""
    better = report.get("better")
    if better is not None and better not in REPORT_BETTER:
        raise ConfigError("report.better", f"{better!r} is not one of {', '.join(REPORT_BETTER)}")
    metric = report.get("metric")
    named = [("report.metric", metric)] if metric is not None else []
    named += [(f"report.also[{i}]", m) for i, m in enumerate(report.get("also") or ())]
    for key, name in named:
        if lookup_metric(name) is None:
            raise ConfigError(key, f"{name!r} is not in the metric registry (kernel_model/metrics.py); "
                              "name a metric simulate() returns")
    if metric is None:
        if better is not None:
            raise ConfigError("report.better", f"{better!r} given without report.metric; it is that metric's direction")
        return None
    registered = lookup_metric(metric).better
    if registered not in REPORT_BETTER:
        raise ConfigError("report.metric", f"{metric} is fixed by the workload (better: {registered} in "
                          "kernel_model/metrics.py); a report ranks by a metric with a better direction")
    if better is not None and better != registered:
        raise ConfigError("report.better", f"{better!r} contradicts the metric registry: {metric} is better "
                          f"{registered} (kernel_model/metrics.py); drop the key or write {registered}")
    return registered


FILE_KINDS = ("trace", "snapshot")
PATH_KINDS = ("trace", "file_tree", "elf_tree", "snapshot")  # snapshot: a sweep.snapshot capture file


def resolve_workload_path(cfg: dict, roots) -> None:
    """Make workload.path absolute, in place, and check that it exists, before any cell runs.

    A relative path is looked up under each of ``roots`` in turn (the user's working
    directory first, then the project root that holds conf/, so the shipped configs'
    repo-relative paths work from anywhere). The cell config, and so its cell_key,
    carries the absolute path.
    """
    w = cfg["workload"]
    path = w.get("path")
    if w["kind"] not in PATH_KINDS or not path:
        return
    candidates = [path] if os.path.isabs(path) else [os.path.join(str(r), path) for r in roots]
    for c in candidates:
        if (os.path.isfile(c) if w["kind"] in FILE_KINDS else os.path.isdir(c)):
            w["path"] = os.path.normpath(os.path.abspath(c))
            return
    what = "file" if w["kind"] in FILE_KINDS else "directory"
    raise ConfigError("workload.path", f"{path!r}: no such {what} (looked in: {', '.join(candidates)})")


def check_ablation(cfg: dict) -> None:
    """ablation.against: a kernel page size other than the cell's own, with the process
    at its kernel's page size, run by the ablation cell function."""
    against = (cfg.get("ablation") or {}).get("against")
    if against is None:
        return
    try:
        b = parse_page_size(against, what="ablation.against")
    except ValueError:
        raise ConfigError("ablation.against", f"{against!r} is not allowed; allowed values: null, 4K, 16K, 64K") from None
    if b == page_sizes(cfg)[0]:
        raise ConfigError("ablation.against", f"{against} is the cell's own kernel.page_size; compare with another")
    if str(cfg["process"]["page_size"]) != "kernel":
        raise ConfigError("process.page_size", f"{cfg['process']['page_size']!r}; an ablation cell compares two "
                          "kernels at their own page sizes, so it must be kernel")


def check_page_size_order(cfg: dict) -> None:
    """The process page size is >= the kernel page size: a process page is a whole
    number of kernel pages (the proposal: a process page size is 4K, 16K or 64K and
    never below PAGE_SIZE; docs/design.md)."""
    kps, pps = page_sizes(cfg)
    if pps < kps:
        raise ConfigError("process.page_size", f"{cfg['process']['page_size']} is smaller than "
                          f"kernel.page_size {cfg['kernel']['page_size']}; it must be >= the kernel's")


def schema_fields(cls=None, prefix: str = ""):
    """Yield (dotted key, python type) for every leaf field of the schema."""
    for f in dataclasses.fields(cls or Config):
        if dataclasses.is_dataclass(f.type):
            yield from schema_fields(f.type, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f.type


# Every Enum-typed field and its allowed values, in declaration order: Hydra refuses
# other values while composing; validate_values() checks plain dicts built otherwise.
CHOICES = {key: tuple(m.value for m in typ) for key, typ in schema_fields()
           if isinstance(typ, type) and issubclass(typ, Enum)}
