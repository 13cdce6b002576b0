"""The results directory as a store: unreadable files are quarantined, the layout is
readable by plain DuckDB / pyarrow / pandas, old layouts migrate, input files are part
of the cell key, and the query CLI refuses a missing directory."""

import datetime as dt
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sweep.query import connect, main as query_main
from tests.conftest import REPO

TRACE = REPO / "tests" / "data" / "lackey_arrayscan.txt.gz"


def cell_files(results):
    return sorted(p for p in results.rglob("*.parquet") if "runs" not in p.parts and "quarantine" not in p.parts)


def count(results, sql="select count(*) from cells"):
    return connect(results).sql(sql).fetchall()[0][0]


# ---- unreadable files -----------------------------------------------------------

def plant_bad_files(results):
    """A garbage .parquet and a truncated copy of a real one beside the run's own file."""
    real = cell_files(results)[0]
    junk = real.parent / "junk-00001.parquet"
    junk.write_bytes(b"this is not parquet\n" * 10)
    cut = real.parent / "cut-00001.parquet"
    data = real.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return junk, cut


def test_corrupt_files_are_quarantined_not_fatal(sweep_run, results, capsys):
    assert sweep_run("+experiment=tiny")[0] == 0
    junk, cut = plant_bad_files(results)
    rel = [p.relative_to(results) for p in (junk, cut)]
    # a file another run is writing right now: a temporary name, never read or moved
    writing = junk.parent / ".r9-00001.parquet.4242.abcd1234.tmp"
    writing.write_bytes(b"PAR1 half a file")
    capsys.readouterr()
    code, out = sweep_run("+experiment=tiny")
    assert code == 0
    assert out.splitlines()[0] == "plan tiny: 5 cells total, 5 already done, 0 to run, 1 skipped"
    err = capsys.readouterr().err.splitlines()
    assert sorted(line.split(": ")[0] for line in err) == ["warning", "warning"]
    for path, r in zip((junk, cut), rel):
        line = next(line for line in err if str(path) in line)
        assert line.endswith(f"moved to {results / 'quarantine' / r}")
        assert not path.exists()
        assert (results / "quarantine" / r).is_file()
    assert (results / "quarantine" / rel[0]).read_bytes() == b"this is not parquet\n" * 10
    assert count(results) == 5
    assert writing.read_bytes() == b"PAR1 half a file"


def test_query_survives_a_corrupt_file(sweep_run, results, capsys):
    assert sweep_run("+experiment=tiny")[0] == 0
    junk, cut = plant_bad_files(results)
    capsys.readouterr()
    assert query_main(["select 1 as one", "--results", str(results), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "one\n1\n"
    assert len(captured.err.splitlines()) == 2 and "unreadable" in captured.err
    assert query_main(["select count(*) as n from cells", "--results", str(results), "--format", "csv"]) == 0
    assert capsys.readouterr().out == "n\n5\n"
    assert not junk.exists() and not cut.exists()


def test_corrupt_data_page_with_a_valid_footer_is_quarantined(sweep_run, results, capsys):
    """Bytes flipped inside the data (the footer still parses): found when the data is read."""
    assert sweep_run("+experiment=tiny")[0] == 0
    real = cell_files(results)[0]
    bad = real.parent / "flipped-00001.parquet"
    data = bytearray(real.read_bytes())
    meta = pq.read_metadata(real)
    col = meta.row_group(0).column(0)            # run_id's data pages
    start = col.data_page_offset
    data[start + 8: start + 40] = b"\xff" * 32
    bad.write_bytes(bytes(data))
    pq.read_metadata(bad)                          # the footer is fine
    capsys.readouterr()
    sql = "select count(*) as n, count(distinct run_id) as runs from cells"   # reads run_id's pages
    assert query_main([sql, "--results", str(results), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "n,runs\n5,1\n"
    assert str(bad) in captured.err and not bad.exists()


# ---- layout ---------------------------------------------------------------------

def test_layout_reads_with_plain_duckdb_pyarrow_and_pandas(sweep_run, results, conf_dir):
    from tests.sweep.conftest import write_experiment

    assert sweep_run("+experiment=tiny")[0] == 0
    # a second experiment whose cell function returns other metrics (l2_tlb_misses only here)
    write_experiment(conf_dir, "other", "# @package _global_\nworkload:\n  accesses: 7\n")
    assert sweep_run("+experiment=other", cell="biased")[0] == 0
    assert sorted(p.name for p in (results / "cells").iterdir()) == ["experiment=other", "experiment=tiny"]
    assert [p.name for p in (results / "runs").iterdir()][0].startswith("date=")
    os.chdir(results.parent)
    try:
        got = duckdb.sql("select count(*) from read_parquet('results/cells/**/*.parquet', "
                         "hive_partitioning=true)").fetchall()
        assert got == [(6,)]
        got = duckdb.sql("select experiment, count(l2_tlb_misses), count(pps_over_kps) from "
                         "read_parquet('results/cells/**/*.parquet', hive_partitioning=true, union_by_name=true) "
                         "group by all order by all").fetchall()
        assert got == [("other", 1, 1), ("tiny", 0, 5)]
        assert duckdb.sql("select count(*) from read_parquet('results/runs/**/*.parquet', "
                          "hive_partitioning=true)").fetchall() == [(2,)]
    finally:
        os.chdir(REPO)
    from sweep.results import cells_dataset

    table = cells_dataset(results).to_table()
    assert table.num_rows == 6
    assert sorted(set(table["experiment"].to_pylist())) == ["other", "tiny"]
    assert table.schema.field("kernel_page_size").type == "int64"
    assert table.filter(pc.field("experiment") == "other")["l2_tlb_misses"].to_pylist() == [1000]
    # the README's pandas one-liners, in a shell in the results' parent directory
    pytest.importorskip("pandas")
    readme = (REPO / "README.md").read_text()
    lines = [line.split("   #")[0] for line in readme.splitlines()
             if line.startswith("python -c") and ("pandas" in line or "cells_dataset" in line)]
    assert len(lines) == 2
    for line in lines:
        cmd = line.rstrip().replace("print(", "print(len(", 1)[:-1] + ')"'      # print the row count
        res = subprocess.run(cmd, shell=True, cwd=results.parent, capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert (res.returncode, res.stdout) == (0, "6\n"), (line, res.stderr)


def test_metric_types_union_across_files(tmp_path):
    """A metric that is int64 in one file, double in another and absent (or all null) in a
    third reads as one double column; a failed-only file carries no metric columns."""
    from sweep.results import CellWriter, cells_dataset
    from tests.sweep.cells import sample_row

    w = CellWriter(tmp_path, "x", "r1", "2026-01-01")
    w.write([sample_row("a", m=1)])
    w.write([sample_row("b", m=2.5)])
    failed = sample_row("c")
    failed.update(status="failed", error="boom", metrics=None)
    CellWriter(tmp_path, "x", "r2", "2026-01-02").write([failed])
    CellWriter(tmp_path, "y", "r3", "2026-01-02").write([sample_row("d", other=True, m=None)])
    assert "m" not in pq.read_schema(next((tmp_path / "cells" / "experiment=y").rglob("*.parquet"))).names
    assert "faults" not in pq.read_schema(next((tmp_path / "cells").rglob("r2-*.parquet"))).names
    con = connect(tmp_path)
    assert con.sql("select cell_key, m, other, experiment, date from cells order by 1").fetchall() == [
        ("a", 1.0, None, "x", dt.date(2026, 1, 1)), ("b", 2.5, None, "x", dt.date(2026, 1, 1)),
        ("c", None, None, "x", dt.date(2026, 1, 2)), ("d", None, True, "y", dt.date(2026, 1, 2))]
    assert dict(con.sql("select column_name, column_type from (describe cells)").fetchall())["m"] == "DOUBLE"
    t = cells_dataset(tmp_path).to_table().sort_by("cell_key")
    assert t["m"].type == "double" and t["m"].to_pylist() == [1.0, 2.5, None, None]


def test_legacy_layout_is_migrated(sweep_run, results):
    assert sweep_run("+experiment=tiny")[0] == 0
    (results / "cells" / "experiment=tiny").rename(results / "experiment=tiny")   # the old layout
    shutil.rmtree(results / "cells")
    assert count(results) == 5                      # a query migrates it
    assert not (results / "experiment=tiny").exists()
    assert len(cell_files(results)) == 1 and cell_files(results)[0].parts[-4] == "cells"
    code, out = sweep_run("+experiment=tiny")
    assert out.splitlines()[0] == "plan tiny: 5 cells total, 5 already done, 0 to run, 1 skipped"


def test_legacy_layout_migrates_into_an_existing_cells_dir(sweep_run, results, conf_dir):
    """Two sweeps' directories of one experiment, one old and one new, merge file by file."""
    assert sweep_run("+experiment=tiny", "kernel.page_size=4K")[0] == 0
    (results / "cells" / "experiment=tiny").rename(results / "experiment=tiny")
    assert sweep_run("+experiment=tiny", "kernel.page_size=16K")[0] == 0
    assert not (results / "experiment=tiny").exists()
    assert count(results, "select count(distinct run_id) from cells") == 2
    assert count(results) == 4


# ---- input files in the cell key --------------------------------------------------

def test_trace_rewritten_in_place_is_a_new_cell(sweep_run, results, tmp_path):
    trace = tmp_path / "t.txt.gz"
    shutil.copy(TRACE, trace)
    assert sweep_run("workload=trace", f"workload.path={trace}")[0] == 0
    code, out = sweep_run("workload=trace", f"workload.path={trace}")
    assert out.splitlines()[0] == "plan default: 1 cells total, 1 already done, 0 to run"
    with gzip.open(TRACE) as f:
        lines = f.read().splitlines(keepends=True)
    trace.write_bytes(gzip.compress(b"".join(lines[: len(lines) // 2])))   # new contents, same path
    code, out = sweep_run("workload=trace", f"workload.path={trace}")
    assert code == 0
    assert out.splitlines()[0] == "plan default: 1 cells total, 0 already done, 1 to run"
    assert count(results, "select count(distinct cell_key) from cells") == 2
    assert count(results, "select count(distinct config_key) from cells") == 1


def test_tree_file_changed_with_same_size_and_mtime_is_a_new_cell(sweep_run, results, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.conf").write_text("alpha\n")
    (tree / "sub" / "b.conf").write_text("bravo\n")
    args = ("workload=file_tree", f"workload.path={tree}")
    assert sweep_run(*args)[0] == 0
    assert sweep_run(*args)[1].splitlines()[0] == "plan default: 1 cells total, 1 already done, 0 to run"
    b = tree / "sub" / "b.conf"
    st = b.stat()
    b.write_text("BRAVO\n")                                    # same size
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))            # same mtime
    assert sweep_run(*args)[1].splitlines()[0] == "plan default: 1 cells total, 0 already done, 1 to run"
    (tree / "sub" / "c.conf").write_text("charlie\n")           # a new file in the tree
    assert sweep_run(*args)[1].splitlines()[0] == "plan default: 1 cells total, 0 already done, 1 to run"


def test_input_digests_are_cached_by_size_and_mtime(sweep_run, results, tmp_path, monkeypatch):
    import sweep.inputs

    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(5):
        (tree / f"f{i}").write_bytes(bytes([i]) * (1000 + i))
    hashed = []
    real = sweep.inputs.file_sha256
    monkeypatch.setattr(sweep.inputs, "file_sha256", lambda p: hashed.append(p) or real(p))
    args = ("workload=file_tree", f"workload.path={tree}")
    assert sweep_run(*args)[0] == 0
    assert len(hashed) == 5
    assert sweep_run(*args)[0] == 0
    assert len(hashed) == 5                                       # all from the cache file
    (tree / "f3").write_bytes(b"x" * 7)
    assert sweep_run(*args)[0] == 0
    assert [os.path.basename(p) for p in hashed[5:]] == ["f3"]


def test_keys_of_cells_without_input_files_are_unchanged(conf_dir):
    """The key of a cell that reads no file is sha256 of the config and model version, as
    before input digests existed (results of earlier runs stay 'done')."""
    from sweep.plan import canonical_json
    from tests.sweep.test_sweep_plan import plan_for

    plan = plan_for(conf_dir, "+experiment=tiny")
    for cell in plan.cells:
        payload = canonical_json({"config": cell.config, "model_version": "m1"})
        assert cell.cell_key == hashlib.sha256(payload.encode()).hexdigest()
        assert cell.inputs_digest is None


# ---- query CLI errors -------------------------------------------------------------

def query_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sweep.query", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_query_of_a_missing_results_dir_is_an_error(tmp_path):
    res = query_cli("select 1", "--results", str(tmp_path / "nope"))
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == (f"error: results directory {tmp_path / 'nope'} does not exist; "
                          "pass --results DIR\n")
    res = query_cli("select 1", cwd=tmp_path)                       # the default ./results
    assert (res.returncode, res.stderr) == (2, "error: results directory ./results does not exist; "
                                               "pass --results DIR\n")


def test_query_output_into_a_missing_directory_is_an_error(tmp_path):
    (tmp_path / "results").mkdir()
    out = tmp_path / "no" / "such" / "q.parquet"
    res = query_cli("select 1", "--results", str(tmp_path / "results"), "--format", "parquet",
                    "--output", str(out))
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == f"error: --output: directory {out.parent} does not exist\n"
    ok = tmp_path / "q.csv"
    res = query_cli("select 1 as one", "--results", str(tmp_path / "results"), "--format", "csv",
                    "--output", str(ok))
    assert res.returncode == 0 and ok.read_text() == "one\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.csv", "results"]   # no temp file left


# ---- nightly --------------------------------------------------------------------

def test_nightly_runs_never_overlap(tmp_path):
    import fcntl

    results = tmp_path / "results"
    results.mkdir()
    lock = open(results / "nightly.lock", "a+")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)          # another nightly is running
    try:
        res = subprocess.run([str(REPO / ".ci" / "nightly")], capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, RESULTS=str(results), EXPERIMENTS="no_such_experiment",
                                      PYTHONPATH=str(REPO)))
    finally:
        lock.close()
    assert res.returncode == 75
    assert res.stdout == ""
    assert res.stderr == (f"nightly: another nightly run holds {results}/nightly.lock; not starting "
                          "(exit 75)\n")


def test_single_file_inputs_are_digested_as_files(tmp_path):
    """A snapshot capture, like a trace, is one file: its digest follows its contents."""
    from sweep.inputs import InputDigests, file_sha256

    snap = tmp_path / "machine.npz"
    snap.write_bytes(b"first capture")
    first = InputDigests().workload({"kind": "snapshot", "path": str(snap)})
    assert first == InputDigests().workload({"kind": "snapshot", "path": str(snap)})
    snap.write_bytes(b"other capture")
    second = InputDigests().workload({"kind": "snapshot", "path": str(snap)})
    assert second != first
    assert file_sha256(str(snap)) in json.dumps(InputDigests()._manifest("snapshot", str(snap), {}))
