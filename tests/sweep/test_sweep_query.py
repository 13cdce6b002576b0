"""python -m sweep.query: views, formats, bad SQL."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from sweep.query import format_table, main

GRID_SQL = ("select kernel_page_size, process_page_size, folio_anon, count(*) from cells "
            "group by all order by all")


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """One tiny serial sweep, shared by the read-only tests of this module."""
    import io
    import shutil

    from sweep.app import CONF_DIR, run
    from tests.sweep.conftest import TINY

    tmp = tmp_path_factory.mktemp("query")
    conf = tmp / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "experiment" / "tiny.yaml").write_text(TINY)
    results = tmp / "results"
    assert run(["+experiment=tiny", "executor=serial", "cell_fn=tests.sweep.cells:trivial",
                f"results.dir={results}", "sweep.progress=false"], config_dir=conf, out=io.StringIO()) == 0
    return results


def test_table_prints_the_grid(done, capsys):
    assert main([GRID_SQL, "--results", str(done)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "kernel_page_size  process_page_size  folio_anon  count_star()",
        "----------------  -----------------  ----------  ------------",
        "            4096               4096  base                   1",
        "            4096              16384  base                   1",
        "           16384              16384  base                   2",
        "           65536              65536  base                   1",
        "(4 rows)",
    ]


def test_csv_json_parquet(done, capsys, tmp_path):
    sql = "select kernel_page_size, status from cells where process_page_size = 16384 order by all"
    assert main([sql, "--results", str(done), "--format", "csv"]) == 0
    assert capsys.readouterr().out == "kernel_page_size,status\n4096,ok\n16384,ok\n16384,ok\n"
    assert main([sql, "--results", str(done), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"kernel_page_size": 4096, "status": "ok"}, {"kernel_page_size": 16384, "status": "ok"},
        {"kernel_page_size": 16384, "status": "ok"}]
    out = tmp_path / "q.parquet"
    assert main([sql, "--results", str(done), "--format", "parquet", "--output", str(out)]) == 0
    assert pq.read_table(out).to_pylist()[0] == {"kernel_page_size": 4096, "status": "ok"}
    assert main([sql, "--results", str(done), "--format", "parquet"]) == 2


def test_runs_view_and_hive_columns(done, capsys):
    assert main(["select experiment, cells_planned, cells_ok, cells_skipped, status from runs",
                 "--results", str(done), "--format", "csv"]) == 0
    assert capsys.readouterr().out == "experiment,cells_planned,cells_ok,cells_skipped,status\ntiny,5,5,1,finished\n"
    assert main(["select distinct experiment from cells", "--results", str(done), "--format", "csv"]) == 0
    assert capsys.readouterr().out == "experiment\ntiny\n"


def test_empty_results_dir_has_empty_views(tmp_path, capsys):
    assert main(["select count(*) as n from cells", "--results", str(tmp_path), "--format", "csv"]) == 0
    assert main(["select count(*) as n from runs", "--results", str(tmp_path), "--format", "csv"]) == 0
    assert capsys.readouterr().out == "n\n0\nn\n0\n"


def test_bad_sql_exit_2_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "sweep.query", "selec * from cells", "--results", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.splitlines()[0] == 'error: Parser Error: syntax error at or near "selec"'
    assert "Traceback" not in res.stderr


def test_format_table_alignment():
    assert format_table(["a", "name"], [(1, "x"), (22, None), (3.5, "long")]).splitlines() == [
        "  a  name",
        "---  ----",
        "  1  x",
        " 22  NULL",
        "3.5  long",
        "(3 rows)",
    ]
