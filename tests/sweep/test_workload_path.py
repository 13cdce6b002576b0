"""workload.path is resolved and checked at plan time: a missing trace or tree is one
error line naming workload.path before any cell runs, and the cell config carries the
absolute path (so its cell_key names the data it read)."""

import json
import os

from sweep.query import connect


def test_missing_trace_is_an_error_before_anything_runs(sweep_run, results, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sweep_run("workload=trace", "workload.path=no/such/trace.gz") == (2, "")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: workload.path: 'no/such/trace.gz': no such file")
    assert not results.exists()


def test_shipped_relative_trace_path_resolves_from_any_directory(sweep_run, results, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the project root: conf/workload/trace.yaml is repo-relative
    code, _ = sweep_run("workload=trace")
    assert code == 0
    con = connect(results)
    rows = con.execute("select config_json from cells where status = 'ok'").fetchall()
    assert len(rows) == 1
    path = json.loads(rows[0][0])["workload"]["path"]
    assert os.path.isabs(path) and os.path.isfile(path) and path.endswith("tests/data/lackey_arrayscan.txt.gz")
