"""python -m sweep.report: the figure and the summary table of one run of an experiment."""

import datetime as dt
import io
import os

from kernel_model.units import parse_page_size
from sweep.app import run
from sweep.report import main
from sweep.results import CellWriter
from tests.sweep.cells import sample_row

PNG = b"\x89PNG\r\n\x1a\n"
ANON_DIVISOR = {"base": 1, "mthp": 2, "mthp_only": 4}


def mthp_metrics(cfg):
    """A cell function whose mthp_gap metrics are known: translation cost falls with the
    kernel page size and the folio policy, page tables shrink with the kernel page."""
    kps = parse_page_size(cfg["kernel"]["page_size"])
    walk = 1600 // (kps // 4096) // ANON_DIVISOR[cfg["folio"]["anon"]]
    return {"walk_mem_refs": walk, "l2_tlb_misses": walk // 2, "pgtable_bytes_linux": 8 * 65536 // (kps // 4096)}


def table(report_md: str) -> list:
    """The first Markdown table of a report as lists of cells (header first)."""
    lines = [ln for ln in report_md.splitlines() if ln.startswith("|")]
    first = []
    for ln in lines:
        if ln.startswith("|---"):
            continue
        first.append([c.strip() for c in ln.strip("|").split("|")])
    return first


def write_cells(results, experiment, run_id, cells, started=0, date="2026-01-01"):
    """Rows as sweep.app writes them: cells = [(config columns, metrics, status)]."""
    rows = []
    for i, (config, metrics, status) in enumerate(cells):
        row = sample_row(f"{run_id}-{i}", **metrics)
        row.update(config, run_id=run_id, cell=" ".join(f"{k}={v}" for k, v in config.items()) or f"c{i}",
                   started_at=dt.datetime(2026, 1, 1, 0, 0, started, tzinfo=dt.timezone.utc), status=status,
                   error=None if status == "ok" else "Traceback ...\nValueError: no 64K model here")
        if status != "ok":
            row["metrics"] = {}
        rows.append(row)
    CellWriter(results, experiment, run_id, date).write(rows)


def report_dir(results, experiment):
    (run_dir,) = (results / "reports" / experiment).iterdir()
    return run_dir


def test_mthp_gap_from_a_serial_sweep(conf_dir, results, capsys):
    code = run(["executor=serial", "cell_fn=tests.sweep.test_report:mthp_metrics", f"results.dir={results}",
                "sweep.progress=false", "+experiment=mthp_gap"], config_dir=conf_dir, out=io.StringIO())
    assert code == 0
    assert main(["--experiment", "mthp_gap", "--results", str(results)]) == 0
    out = report_dir(results, "mthp_gap")
    assert capsys.readouterr().out == f"report mthp_gap: {out / 'report.md'}\n"
    assert sorted(os.listdir(out)) == ["metrics.csv", "mthp_gap.png", "report.md"]
    assert (out / "mthp_gap.png").read_bytes()[:8] == PNG
    md = (out / "report.md").read_text()
    assert "![mthp_gap](mthp_gap.png)" in md
    assert table(md) == [
        ["config", "walk_mem_refs", "walk_mem_refs / base", "l2_tlb_misses", "l2_tlb_misses / base",
         "pgtable_bytes_linux", "pgtable_bytes_linux / base"],
        ["k4K p4K base", "1600", "1", "800", "1", "524288", "1"],
        ["k4K p4K mthp", "800", "0.5", "400", "0.5", "524288", "1"],
        ["k4K p4K mthp_only", "400", "0.25", "200", "0.25", "524288", "1"],
        ["k4K p16K base", "1600", "1", "800", "1", "524288", "1"],
        ["k4K p16K mthp", "800", "0.5", "400", "0.5", "524288", "1"],
        ["k4K p16K mthp_only", "400", "0.25", "200", "0.25", "524288", "1"],
        ["k4K p64K base", "1600", "1", "800", "1", "524288", "1"],
        ["k4K p64K mthp", "800", "0.5", "400", "0.5", "524288", "1"],
        ["k4K p64K mthp_only", "400", "0.25", "200", "0.25", "524288", "1"],
        ["k16K p16K base", "400", "0.25", "200", "0.25", "131072", "0.25"],
        ["k16K p16K mthp", "200", "0.125", "100", "0.125", "131072", "0.25"],
        ["k16K p16K mthp_only", "100", "0.0625", "50", "0.0625", "131072", "0.25"],
        ["k16K p64K base", "400", "0.25", "200", "0.25", "131072", "0.25"],
        ["k16K p64K mthp", "200", "0.125", "100", "0.125", "131072", "0.25"],
        ["k16K p64K mthp_only", "100", "0.0625", "50", "0.0625", "131072", "0.25"],
        ["k64K p64K base", "100", "0.0625", "50", "0.0625", "32768", "0.0625"],
        ["k64K p64K mthp", "50", "0.03125", "25", "0.03125", "32768", "0.0625"],
        ["k64K p64K mthp_only", "25", "0.01562", "12", "0.015", "32768", "0.0625"],
    ]
    # folio.mthp_sizes is zipped with the kernel: it names no configuration of its own
    assert "(keys: kernel_page_size, process_page_size, folio_anon)" in md
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert csv_lines[0] == "config,cells,walk_mem_refs,l2_tlb_misses,pgtable_bytes_linux"
    assert csv_lines[1] == "k4K p4K base,1,1600,800,524288"
    assert len(csv_lines) == 19


K4, K16, K64 = 4096, 16384, 65536


def test_latest_run_by_default_and_run_option(tmp_path, capsys):
    results = tmp_path / "results"
    cfg = {"kernel_page_size": K4, "process_page_size": K4, "folio_anon": "base"}
    old = {"walk_mem_refs": 10, "l2_tlb_misses": 5, "pgtable_bytes_linux": 4096}
    new = {"walk_mem_refs": 20, "l2_tlb_misses": 6, "pgtable_bytes_linux": 4096}
    write_cells(results, "mthp_gap", "run-old", [(cfg, old, "ok")], started=1)
    write_cells(results, "mthp_gap", "run-new", [(cfg, new, "ok")], started=2, date="2026-01-02")
    assert main(["--experiment", "mthp_gap", "--results", str(results), "--out", str(tmp_path / "a")]) == 0
    assert table((tmp_path / "a" / "report.md").read_text())[1] == ["k4K p4K base", "20", "1", "6", "1", "4096", "1"]
    assert main(["--experiment", "mthp_gap", "--results", str(results), "--out", str(tmp_path / "b"),
                 "--run", "run-old"]) == 0
    assert table((tmp_path / "b" / "report.md").read_text())[1] == ["k4K p4K base", "10", "1", "5", "1", "4096", "1"]
    capsys.readouterr()
    assert main(["--experiment", "mthp_gap", "--results", str(results), "--run", "run-nope"]) == 1
    assert capsys.readouterr().err == (f"error: run 'run-nope' has no cells for experiment 'mthp_gap' under "
                                       f"{results}; its runs, newest first: run-new, run-old\n")


def test_no_rows_and_no_results_dir(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["--experiment", "mthp_gap", "--results", str(results)]) == 1
    assert capsys.readouterr().err == (f"error: results directory {results} does not exist; "
                                       "pass --results DIR\n")
    write_cells(results, "eof_overhang", "r1", [({}, {"sigbus": 1}, "ok")])
    assert main(["--experiment", "mthp_gap", "--results", str(results)]) == 1
    assert capsys.readouterr().err == (f"error: no cells for experiment 'mthp_gap' under {results}; run "
                                       f"`python -m sweep +experiment=mthp_gap results.dir={results}` first\n")
    assert not (results / "reports").exists()


def test_only_failed_cells_exit_1(tmp_path, capsys):
    results = tmp_path / "results"
    write_cells(results, "mthp_gap", "r1", [({"kernel_page_size": K64, "process_page_size": K64}, {}, "failed")] * 2)
    assert main(["--experiment", "mthp_gap", "--results", str(results)]) == 1
    assert capsys.readouterr().err == ("error: every cell of run r1 (mthp_gap) failed: 2 cell(s); first error: "
                                       "ValueError: no 64K model here\n")
    assert not (results / "reports").exists()


def test_failed_cells_listed_beside_the_ok_ones(tmp_path):
    results = tmp_path / "results"
    m = {"padding_bytes": 61440, "sigbus": 0}
    write_cells(results, "eof_overhang", "r1", [
        ({"process_page_size": K64, "abi_overhang": "anon_fault"}, m, "ok"),
        ({"process_page_size": K64, "abi_overhang": "sigbus"}, {}, "failed"),
    ])
    assert main(["--experiment", "eof_overhang", "--results", str(results)]) == 0
    md = (report_dir(results, "eof_overhang") / "report.md").read_text()
    assert "1 ok, 1 failed of 2 cells" in md
    assert md.split("## Failed cells\n\n")[1].splitlines()[:3] == [
        "| cell | error |", "|---|---|",
        "| process_page_size=65536 abi_overhang=sigbus | ValueError: no 64K model here |"]


def test_eof_overhang_sparse_vma_counter_reads_zero(tmp_path):
    """ev_overhang_vmas exists only where an extra VMA was mapped; elsewhere it is 0."""
    results = tmp_path / "results"
    cells = []
    for pps, padding in ((K4, 0), (K64, 61440)):
        cells += [({"process_page_size": pps, "abi_overhang": "anon_fault"}, {"padding_bytes": padding, "sigbus": 0}, "ok"),
                  ({"process_page_size": pps, "abi_overhang": "sigbus"}, {"padding_bytes": 0, "sigbus": pps // K64}, "ok"),
                  ({"process_page_size": pps, "abi_overhang": "anon_vma"},
                   {"padding_bytes": 0, "sigbus": 0, **({"ev_overhang_vmas": 3} if pps == K64 else {})}, "ok")]
    write_cells(results, "eof_overhang", "r1", cells)
    assert main(["--experiment", "eof_overhang", "--results", str(results)]) == 0
    out = report_dir(results, "eof_overhang")
    assert (out / "eof_overhang.png").read_bytes()[:8] == PNG
    assert table((out / "report.md").read_text()) == [
        ["config", "padding_bytes", "sigbus", "overhang_vmas"],
        ["p4K anon_fault", "0", "0", "0"],
        ["p4K sigbus", "0", "0", "0"],
        ["p4K anon_vma", "0", "0", "0"],
        ["p64K anon_fault", "61440", "0", "0"],
        ["p64K sigbus", "0", "1", "0"],
        ["p64K anon_vma", "0", "0", "3"],
    ]


def test_page_size_tradeoff_pareto(tmp_path):
    """Per workload, a configuration is on the front unless another beats it in memory and
    walk cycles (at least as good in both, better in one)."""
    results = tmp_path / "results"
    points = {  # (kernel, process): (total_bytes, walk_cycles)
        "random": {(K4, K4): (100, 900), (K4, K64): (160, 300), (K16, K16): (150, 400), (K64, K64): (400, 300)},
        "zipf": {(K4, K4): (100, 100), (K4, K64): (100, 100), (K16, K16): (90, 200), (K64, K64): (300, 50)},
    }
    cells = []
    for wl, pts in points.items():
        for (k, p), (mem, cyc) in pts.items():
            cells.append(({"workload_name": wl, "kernel_page_size": k, "process_page_size": p},
                          {"total_bytes": mem, "walk_cycles": cyc}, "ok"))
    write_cells(results, "page_size_tradeoff", "r1", cells)
    assert main(["--experiment", "page_size_tradeoff", "--results", str(results)]) == 0
    out = report_dir(results, "page_size_tradeoff")
    assert (out / "page_size_tradeoff.png").read_bytes()[:8] == PNG
    rows = table((out / "report.md").read_text())
    assert rows[0] == ["config", "total_bytes", "walk_cycles", "anon_bytes", "pagecache_bytes",
                       "pgtable_bytes_linux", "pgtable_bytes_native", "padding_bytes", "pareto"]
    assert [(r[0], r[1], r[2], r[-1]) for r in rows[1:]] == [
        ("random k4K p4K", "100", "900", "yes"),
        ("random k4K p64K", "160", "300", "yes"),
        ("random k16K p16K", "150", "400", "yes"),
        ("random k64K p64K", "400", "300", "no"),      # k4K p64K: less memory, same cycles
        ("zipf k4K p4K", "100", "100", "yes"),         # ties do not dominate
        ("zipf k4K p64K", "100", "100", "yes"),
        ("zipf k16K p16K", "90", "200", "yes"),
        ("zipf k64K p64K", "300", "50", "yes"),
    ]
    assert rows[1][3:8] == ["n/a"] * 5                  # metrics the run does not have


def test_pagecache_policy_per_policy_in_contract_order(tmp_path):
    results = tmp_path / "results"
    cells = []
    for i, policy in enumerate(("bounce", "fixed", "mmap_convert", "always_max", "drop_reread")):
        cells.append(({"workload_name": "small_files", "folio_pagecache": policy, "process_page_size": K64},
                      {"pagecache_bytes": 4096 * (i + 1), "pagecache_conversion_failures": i,
                       "pagecache_livelocks_avoided": 0, "bounce_bytes": 8192 if policy == "bounce" else 0}, "ok"))
    write_cells(results, "pagecache_policy", "r1", cells)
    assert main(["--experiment", "pagecache_policy", "--results", str(results)]) == 0
    out = report_dir(results, "pagecache_policy")
    assert (out / "pagecache_policy.png").read_bytes()[:8] == PNG
    assert table((out / "report.md").read_text()) == [
        ["config", "pagecache_bytes", "pagecache_conversion_failures", "pagecache_livelocks_avoided", "bounce_bytes"],
        ["fixed", "8192", "1", "0", "0"],               # only the policy varies: the label
        ["always_max", "16384", "3", "0", "0"],
        ["drop_reread", "20480", "4", "0", "0"],
        ["mmap_convert", "12288", "2", "0", "0"],
        ["bounce", "4096", "0", "0", "8192"],
    ]


def test_native_pgtable_and_abi_compat(tmp_path):
    results = tmp_path / "results"
    cells = []
    for mode, pps in (("off", K4), ("mirror", K64), ("on_demand", K64)):
        cells.append(({"arch_native_pgtable": mode, "process_page_size": pps, "workload_name": "random"},
                      {"pgtable_bytes_linux": 16384, "pgtable_bytes_native": 0 if mode == "off" else 8192,
                       "walk_mem_refs": 40 if mode == "off" else 10, "native_fallbacks": int(mode == "on_demand")}, "ok"))
    write_cells(results, "native_pgtable", "r1", cells)
    write_cells(results, "abi_compat", "r2", [
        ({"kernel_page_size": K4, "process_page_size": K4}, {"elf_files": 5, "elf_ok": 5, "elf_failed": 0}, "ok"),
        ({"kernel_page_size": K4, "process_page_size": K64},
         {"elf_files": 5, "elf_ok": 2, "elf_failed": 3, "elf_failed_p_align": 2, "elf_failed_congruence": 1}, "ok"),
    ])
    assert main(["--experiment", "native_pgtable", "--results", str(results)]) == 0
    assert main(["--experiment", "abi_compat", "--results", str(results)]) == 0
    native, abi = report_dir(results, "native_pgtable"), report_dir(results, "abi_compat")
    assert (native / "native_pgtable.png").read_bytes()[:8] == PNG
    assert (abi / "abi_compat.png").read_bytes()[:8] == PNG
    assert table((native / "report.md").read_text()) == [
        ["config", "pgtable_bytes_linux", "pgtable_bytes_native", "walk_mem_refs", "native_fallbacks"],
        ["off p4K", "16384", "0", "40", "0"],
        ["mirror p64K", "16384", "8192", "10", "0"],
        ["on_demand p64K", "16384", "8192", "10", "1"],
    ]
    assert table((abi / "report.md").read_text()) == [
        ["config", "elf_files", "elf_ok", "elf_failed", "elf_failed_congruence", "elf_failed_p_align"],
        ["p4K", "5", "5", "0", "0", "0"],
        ["p64K", "5", "2", "3", "1", "2"],
    ]


def test_unknown_experiment_generic_table_means_over_seeds(tmp_path):
    results = tmp_path / "results"
    write_cells(results, "custom", "r1", [
        ({"kernel_page_size": K4, "seed": 0}, {"faults": 10, "walks": 3}, "ok"),
        ({"kernel_page_size": K4, "seed": 1}, {"faults": 20, "walks": 3}, "ok"),
        ({"kernel_page_size": K16, "seed": 0}, {"faults": 7, "walks": 1}, "ok"),
    ])
    assert main(["--experiment", "custom", "--results", str(results)]) == 0
    out = report_dir(results, "custom")
    assert sorted(os.listdir(out)) == ["metrics.csv", "report.md"]
    md = (out / "report.md").read_text()
    assert "Configurations with more than one cell (seeds) show the mean." in md
    assert table(md) == [["config", "cells", "faults", "walks"],
                         ["k4K", "2", "15", "3"],
                         ["k16K", "1", "7", "1"]]


def test_missing_metrics_fall_back_to_the_generic_table(tmp_path):
    results = tmp_path / "results"
    write_cells(results, "mthp_gap", "r1", [({"folio_anon": "mthp"}, {"faults": 4}, "ok")])
    assert main(["--experiment", "mthp_gap", "--results", str(results)]) == 0
    md = (report_dir(results, "mthp_gap") / "report.md").read_text()
    assert ("The mthp_gap figure needs metric columns this run lacks: walk_mem_refs, l2_tlb_misses, "
            "pgtable_bytes_linux; every metric per configuration instead.") in md
    assert table(md) == [["config", "cells", "faults"], ["k4K p4K mthp", "1", "4"]]


def test_rewrite_replaces_the_report_atomically(tmp_path):
    results = tmp_path / "results"
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.png").write_bytes(b"old")
    write_cells(results, "custom", "r1", [({}, {"faults": 1}, "ok")])
    assert main(["--experiment", "custom", "--results", str(results), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["metrics.csv", "report.md"]
    assert sorted(os.listdir(tmp_path)) == ["out", "results"]   # no temporary directory left
    first = (out / "report.md").read_bytes()
    assert main(["--experiment", "custom", "--results", str(results), "--out", str(out)]) == 0
    assert (out / "report.md").read_bytes() == first            # deterministic
    (tmp_path / "file").write_text("x")
    assert main(["--experiment", "custom", "--results", str(results), "--out", str(tmp_path / "file")]) == 2


def test_mthp_gap_second_workload_is_a_key_with_its_own_base(tmp_path):
    """A varying column the keys do not fix (workload) splits configurations, and each is
    normalised to the base cell of its own workload; a run without one reads n/a."""
    results = tmp_path / "results"
    cells = []
    for wl, scale in (("random", 1), ("zipf", 10)):
        for kps, anon in ((K4, "base"), (K4, "mthp"), (K64, "base")):
            walk = scale * 800 // (kps // K4) // ANON_DIVISOR[anon]
            cells.append(({"workload_name": wl, "workload_pattern": wl, "kernel_page_size": kps,
                           "process_page_size": kps, "folio_anon": anon},
                          {"walk_mem_refs": walk, "l2_tlb_misses": walk, "pgtable_bytes_linux": 4096}, "ok"))
    write_cells(results, "mthp_gap", "r1", cells)
    assert main(["--experiment", "mthp_gap", "--results", str(results)]) == 0
    md = (report_dir(results, "mthp_gap") / "report.md").read_text()
    assert "(keys: kernel_page_size, process_page_size, folio_anon, workload_name)" in md
    assert [r[:3] for r in table(md)[1:]] == [
        ["k4K p4K base random", "800", "1"], ["k4K p4K base zipf", "8000", "1"],
        ["k4K p4K mthp random", "400", "0.5"], ["k4K p4K mthp zipf", "4000", "0.5"],
        ["k64K p64K base random", "50", "0.0625"], ["k64K p64K base zipf", "500", "0.0625"],
    ]
    write_cells(results, "mthp_gap", "r2", [(c, m, s) for c, m, s in cells if c["kernel_page_size"] == K64],
                started=5)
    assert main(["--experiment", "mthp_gap", "--results", str(results), "--run", "r2"]) == 0
    out = results / "reports" / "mthp_gap" / "r2"
    assert (out / "mthp_gap.png").read_bytes()[:8] == PNG
    assert [r[:3] for r in table((out / "report.md").read_text())[1:]] == [["random", "50", "n/a"],
                                                                           ["zipf", "500", "n/a"]]


def test_cells_done_by_an_earlier_run_are_flagged(tmp_path, capsys):
    """A sweep skips cells an earlier run already has (any experiment); the report says so."""
    from sweep.results import RUN_COLUMNS, write_run

    results = tmp_path / "results"
    write_cells(results, "custom", "r1", [({}, {"faults": 1}, "ok")])
    record = {name: None for name, _ in RUN_COLUMNS}
    record.update(run_id="r1", experiment="custom", cells_planned=3, cells_done_before=2, cells_ok=1)
    write_run(results, "2026-01-01", record)
    assert main(["--experiment", "custom", "--results", str(results)]) == 0
    md = (report_dir(results, "custom") / "report.md").read_text()
    assert ("**Incomplete:** 2 planned cell(s) were already done by earlier runs and are not in this run; "
            "rerun the sweep with `sweep.force=true` for a complete one.") in md
    assert capsys.readouterr().err == ("warning: the run reused cells of earlier runs; the report lacks them "
                                       "(see report.md)\n")


def test_labels():
    from sweep.report import label

    assert label({"kernel_page_size": K4, "process_page_size": K64, "folio_anon": "mthp_only"}) == "k4K p64K mthp_only"
    assert label({"workload_name": "small_files", "workload_large_folio_fs": False, "workload_mlock_fraction": 0.5,
                  "workload_pin_fraction": 0.0, "folio_pagecache": "drop_reread"}) == \
        "small_files large_folio_fs=false mlock=0.5 drop_reread"
    assert label({"memory_fragmentation": 0.0, "workload_working_set": 128 << 20, "tlb_l1_entries": 48}) == \
        "fragmentation=0.0 working_set=128M l1_entries=48"
