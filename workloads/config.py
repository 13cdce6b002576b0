"""The workload config group: defaults, parsing and validation.

Field names are those of sweep/schema.py (the `workload` group); the defaults here
apply when a caller passes a partial dict (tests, the Python API). Every error names
the field and says what a valid value looks like. Defaults equal sweep/schema.py's
WorkloadConf (a test checks it field for field), so a partial dict means what the same
partial config group means. KINDS and PATTERNS are the Enums the schema types its fields with.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from kernel_model.choices import choices
from kernel_model.units import format_size, parse_size


WorkloadKind = choices(  # workload.kind
    "WorkloadKind", "synthetic trace file_tree elf_tree file_set mixed abi_probe snapshot", __name__)
WorkloadPattern = choices("WorkloadPattern", "sequential uniform zipf strided", __name__)  # workload.pattern
KINDS = WorkloadKind.values()
PATTERNS = WorkloadPattern.values()

# Zipf and file touches are drawn over pages of this size: the smallest arm64
# granule, so one workload is the same byte stream at every page size swept.
WORKLOAD_PAGE = 4096


@dataclass(frozen=True)
class WorkloadConfig:
    name: str = "random"
    kind: str = "synthetic"
    pattern: str = "uniform"
    working_set: int = 64 << 20
    accesses: int = 200_000
    write_ratio: float = 0.3
    stride: int = 4096
    zipf_alpha: float = 1.0
    path: str | None = None
    max_files: int | None = None  # None or 0: no cap
    nr_small_files: int = 0
    small_file_median: int = 2048
    small_file_sigma: float = 1.0
    nr_large_files: int = 0
    large_file_size: int = 8 << 20
    mmap_fraction: float = 0.0
    large_folio_fs: bool = True
    processes: int = 1
    mlock_fraction: float = 0.0  # of each large file's pages, mlocked by a holder process
    pin_fraction: float = 0.0  # of each large file's pages, long-term pinned by a holder
    touch_tail: bool = False  # file_set: also touch each mapped file's last process page past EOF
    read_before_mmap: bool = False  # file_set: read() each large file whole before mapping it
    map_gap: int = 1 << 30  # trace: untouched gaps up to this many bytes lie inside the VMA around them

    def describe(self) -> dict:
        """The fields that matter for this kind, sizes spelled as configs spell them."""
        keep = {
            "synthetic": ("pattern", "working_set", "accesses", "write_ratio", "stride", "zipf_alpha"),
            "trace": ("path", "map_gap"),
            "file_tree": ("path", "max_files"),
            "elf_tree": ("path", "max_files"),
            "file_set": (
                "nr_small_files", "small_file_median", "small_file_sigma", "nr_large_files",
                "large_file_size", "mmap_fraction", "large_folio_fs", "mlock_fraction", "pin_fraction",
                "touch_tail", "read_before_mmap",
            ),
            "abi_probe": ("working_set",),
            "snapshot": ("path", "large_folio_fs"),
            "mixed": (
                "pattern", "working_set", "accesses", "write_ratio", "zipf_alpha", "nr_small_files",
                "small_file_median", "small_file_sigma", "nr_large_files", "large_file_size",
                "mmap_fraction", "large_folio_fs", "processes", "mlock_fraction", "pin_fraction",
            ),
        }[self.kind]
        out = {"name": self.name, "kind": self.kind}
        for key in keep:
            value = getattr(self, key)
            if key in _SIZE_FIELDS:
                value = format_size(value)
            out[key] = value
        return out


_SIZE_FIELDS = ("working_set", "stride", "small_file_median", "large_file_size", "map_gap")
_FIELD_NAMES = tuple(f.name for f in fields(WorkloadConfig))


def _to_dict(wcfg) -> dict:
    if isinstance(wcfg, dict):
        return dict(wcfg)
    try:  # an OmegaConf DictConfig from Hydra
        from omegaconf import DictConfig, OmegaConf

        if isinstance(wcfg, DictConfig):
            return OmegaConf.to_container(wcfg, resolve=True, enum_to_str=True)
    except ImportError:
        pass
    raise ValueError(f"workload: expected a mapping of workload fields, got {type(wcfg).__name__}")


def _int(name, value, *, minimum=0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"workload.{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"workload.{name}: must be >= {minimum}, got {value}")
    return value


def _fraction(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"workload.{name}: expected a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"workload.{name}: must be in [0, 1], got {value}")
    return float(value)


def parse_workload_config(wcfg) -> WorkloadConfig:
    """A WorkloadConfig from a dict or DictConfig of workload fields (all optional)."""
    raw = _to_dict(wcfg)
    unknown = sorted(set(raw) - set(_FIELD_NAMES))
    if unknown:
        raise ValueError(f"workload: unknown field(s) {unknown}; known fields: {list(_FIELD_NAMES)}")
    out = {f.name: f.default for f in fields(WorkloadConfig)}
    out.update(raw)

    if not isinstance(out["name"], str) or not out["name"]:
        raise ValueError(f"workload.name: expected a non-empty string, got {out['name']!r}")
    if out["kind"] not in KINDS:
        raise ValueError(f"workload.kind: {out['kind']!r} is not one of {list(KINDS)}")
    if out["pattern"] not in PATTERNS:
        raise ValueError(f"workload.pattern: {out['pattern']!r} is not one of {list(PATTERNS)}")
    for key in _SIZE_FIELDS:
        out[key] = parse_size(out[key], what=f"workload.{key}")
    for key in ("accesses", "nr_small_files", "nr_large_files"):
        out[key] = _int(key, out[key])
    out["processes"] = _int("processes", out["processes"], minimum=1)
    if out["max_files"] is not None:
        out["max_files"] = _int("max_files", out["max_files"]) or None
    for key in ("write_ratio", "mmap_fraction", "mlock_fraction", "pin_fraction"):
        out[key] = _fraction(key, out[key])
    for key in ("zipf_alpha", "small_file_sigma"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"workload.{key}: expected a number >= 0, got {value!r}")
        out[key] = float(value)
    if not isinstance(out["large_folio_fs"], bool):
        raise ValueError(f"workload.large_folio_fs: expected true or false, got {out['large_folio_fs']!r}")
    if out["path"] is not None:
        out["path"] = str(out["path"])

    if out["working_set"] == 0 or out["working_set"] % WORKLOAD_PAGE:
        raise ValueError(
            f"workload.working_set: must be a positive multiple of 4K, got {out['working_set']}"
        )
    if out["stride"] == 0 or out["stride"] % 8:
        raise ValueError(f"workload.stride: must be a positive multiple of 8 bytes, got {out['stride']}")
    if out["small_file_median"] == 0:
        raise ValueError("workload.small_file_median: must be at least 1 byte")
    if out["kind"] in ("trace", "file_tree", "elf_tree", "snapshot") and not out["path"]:
        raise ValueError(f"workload.path: kind={out['kind']} needs a path (a file or directory)")
    return WorkloadConfig(**out)
