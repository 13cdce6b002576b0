"""The metric registry covers every metric simulate() returns, and its consumers read it."""

import json
from pathlib import Path

import pytest

from kernel_model.metrics import METRIC_NAMES, METRICS, SPARSE_PREFIXES, Metric, better, lookup
from sweep.nightly import _verdict

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "golden_metrics.json"


def test_every_golden_metric_is_registered():
    # tests/golden/test_golden.py asserts simulate() returns exactly these names per cell
    golden = json.loads(GOLDEN.read_text())
    names = {n for metrics in golden.values() for n in metrics}
    assert sorted(n for n in names if lookup(n) is None) == []
    # every cell carries the whole contract; a sparse family's name is never a contract name
    assert all(set(METRIC_NAMES) <= set(m) for m in golden.values())
    assert [n for n in METRIC_NAMES if n.startswith(SPARSE_PREFIXES)] == []


def test_registry_is_consistent():
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))
    assert SPARSE_PREFIXES == ("ev_", "anon_folios_order_", "elf_failed_")
    # an exact name is never also matched by a family's prefix, so lookup() is unambiguous
    assert [m.name for m in METRICS if not m.family and lookup(m.name) is not m] == []
    assert lookup("elf_failed_no_interp").name == "elf_failed_" and lookup("elf_failed").name == "elf_failed"
    with pytest.raises(ValueError, match="better='up'"):
        Metric("x", "count", "up")


def test_directions_drive_nightly():
    assert (better("elf_ok"), better("accesses"), better("walk_cycles"), better("ev_cow_copies"),
            better("duration_unknown")) == ("higher", "exact", "lower", "lower", "lower")
    assert _verdict("elf_ok", 100, 90, 0.05) == "REGRESSION"
    assert _verdict("walk_cycles", 100, 90, 0.05) == "improved"
    assert _verdict("accesses", 100, 100.5, 0.05) == "REGRESSION"
    assert _verdict("faults", 100, 104, 0.05) == "within"


def test_report_axis_labels_take_units_from_the_registry():
    from sweep.report.figures import axis_label

    assert [axis_label("total_bytes", 2**20), axis_label("pagecache_bytes", 1024), axis_label("walk_cycles"),
            axis_label("ev_overhang_vmas"), axis_label("pagecache_folios_order_3")] == [
        "total_bytes (MiB)", "pagecache_bytes (KiB)", "walk_cycles", "overhang_vmas", "pagecache_folios_order_3"]


def test_every_shipped_report_ranks_in_the_registry_direction():
    from sweep.report.spec import CONF_DIR, load_spec

    specs = {p.stem: load_spec(p.stem) for p in sorted((CONF_DIR / "experiment").glob("*.yaml"))}
    assert {name: (s.metric, s.better) for name, s in specs.items()} == {
        "abi_compat": ("elf_failed", "lower"), "eof_overhang": ("padding_bytes", "lower"),
        "gap_attribution": ("walk_cycles", "lower"),
        "machine_replay": ("total_bytes", "lower"), "mthp_gap": ("walk_mem_refs", "lower"),
        "native_pgtable": ("pgtable_bytes_native", "lower"), "page_size_tradeoff": ("walk_cycles", "lower"),
        "pagecache_policy": ("pagecache_bytes", "lower")}
    assert [m for s in specs.values() for m in s.metrics if lookup(m) is None] == []
