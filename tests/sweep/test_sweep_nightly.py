"""python -m sweep.nightly: the latest run against the previous one, cell by cell."""

import os

from sweep.nightly import main


def run_biased(sweep_run, bias):
    os.environ["SWEEP_TEST_BIAS"] = str(bias)
    try:
        return sweep_run("+experiment=tiny", "kernel.page_size=4K", "sweep.force=true", cell="biased")
    finally:
        del os.environ["SWEEP_TEST_BIAS"]


def test_fewer_than_two_runs(sweep_run, results, capsys):
    run_biased(sweep_run, 1.0)
    assert main(["--experiment", "tiny", "--results", str(results)]) == 0
    assert capsys.readouterr().out == "nightly tiny: fewer than two runs with rows; nothing to compare\n"


def test_unchanged_then_regressed(sweep_run, results, capsys):
    run_biased(sweep_run, 1.0)
    run_biased(sweep_run, 1.02)       # +2%: within the 5% threshold
    assert main(["--experiment", "tiny", "--results", str(results), "--metrics", "l2_tlb_misses"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "nightly tiny: 0 regression(s) beyond 5.0%"
    assert [line.split()[-1] for line in out[2:-2]] == ["within"] * 2
    run_biased(sweep_run, 1.2)        # +17.6% against the previous run
    assert main(["--experiment", "tiny", "--results", str(results), "--metrics", "l2_tlb_misses"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "nightly tiny: 2 regression(s) beyond 5.0%"
    assert out[2].split()[-4:] == ["1020", "1200", "+17.65%", "REGRESSION"]
    # a looser threshold lets it pass; an improvement is never a regression
    assert main(["--experiment", "tiny", "--results", str(results), "--threshold", "0.2"]) == 0
    capsys.readouterr()
    run_biased(sweep_run, 0.5)
    assert main(["--experiment", "tiny", "--results", str(results), "--metrics", "l2_tlb_misses"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[-1] == "improved"
