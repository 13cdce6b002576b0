"""The serial executor end to end: plan -> cells -> Parquet -> DuckDB, resume, failures."""

import glob
import json

import pyarrow.parquet as pq

from sweep.query import connect
from sweep.results import CellWriter, repair
from tests.sweep.cells import sample_row

# tiny: kernel 4k,16k,64k x process kernel,16K; 16K on 64k is skipped.
TINY_CELLS = [(4096, 4096), (4096, 16384), (16384, 16384), (16384, 16384), (65536, 65536)]


def rows(results, sql):
    return connect(results).sql(sql).fetchall()


def test_tiny_grid_rows_and_metrics(sweep_run, results):
    code, out = sweep_run("+experiment=tiny")
    assert code == 0
    assert out.splitlines()[:2] == [
        "plan tiny: 5 cells total, 0 already done, 5 to run, 1 skipped",
        "  skipped kernel.page_size=64K process.page_size=16K: process.page_size 16K < kernel.page_size 64K",
    ]
    got = rows(results, "select kernel_page_size, process_page_size, status, pps_over_kps, accesses, "
                        "workload_accesses, experiment from cells order by all")
    assert got == [
        (4096, 4096, "ok", 1, 1000, 1000, "tiny"),
        (4096, 16384, "ok", 4, 1000, 1000, "tiny"),
        (16384, 16384, "ok", 1, 1000, 1000, "tiny"),
        (16384, 16384, "ok", 1, 1000, 1000, "tiny"),
        (65536, 65536, "ok", 1, 1000, 1000, "tiny"),
    ]
    # one compacted file for the run, typed columns, the config as JSON
    files = glob.glob(str(results / "cells" / "experiment=tiny" / "date=*" / "*.parquet"))
    assert [f.rsplit("-", 1)[1] for f in files] == ["00000.parquet"]
    schema = pq.read_schema(files[0])
    assert str(schema.field("kernel_page_size").type) == "int64"
    assert str(schema.field("folio_mthp_sizes").type) == "string"
    assert str(schema.field("arch_contpte").type) == "bool"
    cfg = json.loads(rows(results, "select config_json from cells where process_page_size = 16384 "
                                   "and kernel_page_size = 4096")[0][0])
    assert (cfg["kernel"]["page_size"], cfg["process"]["page_size"]) == ("4K", "16K")
    assert "results" not in cfg and "sweep" not in cfg and "ray" not in cfg


def test_runs_table_and_resume(sweep_run, results):
    assert sweep_run("+experiment=tiny")[0] == 0
    code, out = sweep_run("+experiment=tiny")
    assert code == 0
    assert out.splitlines()[0] == "plan tiny: 5 cells total, 5 already done, 0 to run, 1 skipped"
    assert rows(results, "select count(*) from cells") == [(5,)]
    assert rows(results, "select cells_planned, cells_done_before, cells_ok, cells_failed, cells_skipped, "
                         "status, exit_status from runs order by started_at") == [
        (5, 0, 5, 0, 1, "finished", 0),
        (5, 5, 0, 0, 1, "finished", 0),
    ]
    # a changed value is a new cell; results.dir/executor are not part of the key
    code, out = sweep_run("+experiment=tiny", "workload.accesses=2000")
    assert out.splitlines()[0] == "plan tiny: 5 cells total, 0 already done, 5 to run, 1 skipped"
    code, out = sweep_run("+experiment=tiny", "sweep.force=true")
    assert out.splitlines()[0] == "plan tiny: 5 cells total, 0 already done, 5 to run, 1 skipped"
    assert rows(results, "select count(*), count(distinct cell_key) from cells") == [(15, 10)]


def test_failed_cells_become_rows_and_exit_1(sweep_run, results):
    code, out = sweep_run("+experiment=tiny", "sweep.app_retries=2", cell="fail_on_64k")
    assert code == 1
    assert "FAILED kernel.page_size=64K process.page_size=kernel: ValueError: no 64K model here" in out
    got = rows(results, "select kernel_page_size, process_page_size, status, attempts, "
                        "split_part(error, chr(10), 1) from cells order by all")
    assert got == [
        (4096, 4096, "ok", 1, None),
        (4096, 16384, "ok", 1, None),
        (16384, 16384, "ok", 1, None),
        (16384, 16384, "ok", 1, None),
        (65536, 65536, "failed", 3, "ValueError: no 64K model here"),
    ]
    assert rows(results, "select cells_ok, cells_failed, exit_status from runs") == [(4, 1, 1)]
    # a rerun retries only the failed cell
    code, out = sweep_run("+experiment=tiny", cell="fail_on_64k")
    assert code == 1
    assert out.splitlines()[0].startswith("plan tiny: 5 cells total, 4 already done, 1 to run")


def test_single_cell_without_sweep_node(sweep_run, results):
    code, out = sweep_run("kernel=16k", "process.page_size=64K")
    assert code == 0
    assert out.splitlines()[0] == "plan default: 1 cells total, 0 already done, 1 to run"
    assert rows(results, "select experiment, cell, kernel_page_size, process_page_size, pps_over_kps "
                         "from cells") == [("default", "(single cell)", 16384, 65536, 4)]


def test_dry_run_writes_nothing(sweep_run, results):
    code, out = sweep_run("+experiment=tiny", "sweep.dry_run=true")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "plan tiny: 5 cells total, 0 already done, 5 to run, 1 skipped"
    assert [" ".join(line.split()[2:]) for line in lines[2:]] == [
        "kernel.page_size=4K process.page_size=kernel",
        "kernel.page_size=4K process.page_size=16K",
        "kernel.page_size=16K process.page_size=kernel",
        "kernel.page_size=16K process.page_size=16K",
        "kernel.page_size=64K process.page_size=kernel",
    ]
    assert not results.exists()


def test_compaction_and_repair(tmp_path):
    w = CellWriter(tmp_path, "x", "r1", "2026-01-01")
    w.write([sample_row("a")])
    w.write([sample_row("b"), sample_row("c")])
    assert sorted(p.name for p in w.dir.iterdir()) == ["r1-00001.parquet", "r1-00002.parquet"]
    w.compact()
    assert sorted(p.name for p in w.dir.iterdir()) == ["r1-00000.parquet"]
    assert pq.read_table(w.dir / "r1-00000.parquet")["cell_key"].to_pylist() == ["a", "b", "c"]
    w2 = CellWriter(tmp_path, "x", "r2", "2026-01-01")
    w2.write([sample_row("d")])
    w2.write([sample_row("e")])
    w2.compact()
    # a crash after part 00000 landed, before the parts were unlinked: put one back
    CellWriter(tmp_path, "x", "r2", "2026-01-01").write([sample_row("d")])
    assert repair(tmp_path) == 1
    assert sorted(p.name for p in w2.dir.iterdir()) == ["r1-00000.parquet", "r2-00000.parquet"]


def test_cli_writes_only_results_in_the_working_directory(tmp_path):
    """No outputs/, .hydra/ or log files from Hydra; --cfg job prints and writes nothing."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = dict(os.environ, PYTHONPATH=str(REPO))
    base = [sys.executable, "-m", "sweep", "executor=serial", "cell_fn=tests.sweep.cells:trivial",
            "kernel=16k", "sweep.progress=false"]
    res = subprocess.run(base + ["--cfg", "job"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0
    assert res.stdout.splitlines()[3:5] == ["kernel:", "  page_size: 16K"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    res = subprocess.run(base, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["cells", "runs", "state"]


def test_single_run_with_process_below_kernel_is_an_error(sweep_run, results, capsys):
    assert sweep_run("kernel=64k", "process.page_size=16K") == (2, "")
    assert capsys.readouterr().err.splitlines() == [
        "error: process.page_size: 16K is smaller than kernel.page_size 64K; it must be >= the kernel's"]
    assert not results.exists()
