"""A cell another experiment already computed is not recomputed, yet the new experiment's
partition gets its row (copied, reused_from = the run that computed it): every
experiment's results hold exactly one ok row per planned cell."""

from sweep.query import connect

from tests.sweep.conftest import write_experiment

OTHER = """\
# @package _global_
workload:
  accesses: 1000
sweep:
  grid:
    kernel.page_size: 4K,16K
"""


def test_overlapping_experiment_copies_done_cells(sweep_run, results, conf_dir):
    write_experiment(conf_dir, "other", OTHER)
    assert sweep_run("+experiment=tiny")[0] == 0
    code, out = sweep_run("+experiment=other")
    assert code == 0
    assert "2 already done (2 in other experiments: their rows are copied), 0 to run" in out
    con = connect(results)
    tiny_run = con.sql("select run_id from runs where experiment = 'tiny'").fetchall()[0][0]
    other_run = con.sql("select run_id from runs where experiment = 'other'").fetchall()[0][0]
    rows = con.sql("select kernel_page_size, process_page_size, run_id, reused_from, status from cells "
                   "where experiment = 'other' order by all").fetchall()
    assert rows == [(4096, 4096, other_run, tiny_run, "ok"), (16384, 16384, other_run, tiny_run, "ok")]
    assert con.sql("select cells_reused, cells_to_run from runs where experiment = 'other'").fetchall() == [(2, 0)]
    # The copies are data, not new work: a rerun of `other` copies nothing more.
    code, out = sweep_run("+experiment=other")
    assert "2 already done, 0 to run" in out
    assert connect(results).sql("select count(*) from cells where experiment = 'other'").fetchall() == [(2,)]
