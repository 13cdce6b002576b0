"""``python -m sweep.report --experiment NAME``: figures, a Markdown summary and the answer
to the experiment's question, from one run.

Reads the cell rows of the latest run of an experiment (or ``--run RUN_ID``) and writes,
into ``--out`` (default ``<results>/reports/<experiment>/<run_id>/``):

    report.md     the question, the answer computed from the run, the run, the
                  experiment's table, image links, failed cells
    <name>.png    the figure that answers the experiment's question
    metrics.csv   every metric column per configuration (the generic table)

The question, key columns and answering metric are the ``report:`` node of
conf/experiment/NAME.yaml (sweep/report/spec.py). Modules: load (rows into
configurations), tables, figures, answers. Unknown experiments get the generic table
only. Failed cells are listed and left out of the figures. Exit 1 with one message
when the run has no rows or only failed ones; argument errors exit 2. The output
directory is written under a temporary name beside it and renamed into place, so a
reader never sees half a report.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from sweep.report import figures, tables
from sweep.report.answers import answer
from sweep.report.load import Group, ReportError, Run, label, load_run  # noqa: F401  (the package API)
from sweep.report.spec import ReportSpec, load_spec


@dataclass(frozen=True)
class View:
    """How an experiment is shown: the metrics its figure needs, its table and figure."""

    required: tuple
    table: object
    figure: object


VIEWS = {
    "mthp_gap": View(tables.MTHP_GAP_METRICS, tables.mthp_gap_table, figures.mthp_gap_figure),
    "page_size_tradeoff": View(("total_bytes", "walk_cycles"), tables.tradeoff_table, figures.tradeoff_figure),
    "pagecache_policy": View(("pagecache_bytes",), tables.pagecache_table, figures.pagecache_figure),
    "native_pgtable": View(("pgtable_bytes_linux", "pgtable_bytes_native", "walk_mem_refs", "native_fallbacks"),
                           tables.native_table, figures.native_figure),
    "eof_overhang": View(("padding_bytes", "sigbus"), tables.eof_table, figures.eof_figure),
    "abi_compat": View(("elf_ok", "elf_failed"), tables.abi_table, figures.abi_figure),
    "machine_replay": View(("anon_bytes", "pagecache_bytes", "padding_bytes", "pgtable_bytes_linux", "total_bytes"),
                           tables.replay_table, figures.replay_figure),
    "gap_attribution": View(tables.GAP_METRICS, tables.gap_table, figures.gap_figure),
}


def png_bytes(fig, plt) -> bytes:
    """The figure as PNG bytes (no timestamps: the same figure gives the same bytes); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def build(run: Run, spec: ReportSpec | None = None) -> tuple:
    """(markdown text, {file name: bytes}) of the report of ``run``."""
    spec = spec or ReportSpec()
    view = VIEWS.get(run.experiment)
    files, md = {}, [f"# {run.experiment}: run {run.run_id}", ""]
    if spec.question:
        md += [f"**Question:** {spec.question}", ""]
    text = answer(run, spec) if spec.question or run.experiment in VIEWS else ""
    if text:
        md += [f"**Answer:** {text}", ""]
    info = run.info
    md += [f"Run `{run.run_id}` started {info['started_at']:%Y-%m-%d %H:%M:%S} UTC: {info['ok']} ok, "
           f"{info['cells'] - info['ok']} failed of {info['cells']} cells; {len(run.groups)} configurations "
           f"(keys: {', '.join(run.keys) or 'none'}); model {info['model_version']}, git {info['git_sha']}.", ""]
    if info["done_before"]:
        md += [f"**Incomplete:** {info['done_before']} planned cell(s) were already done by earlier runs and "
               "are not in this run; rerun the sweep with `sweep.force=true` for a complete one.", ""]
    if any(g.n > 1 for g in run.groups):
        md += ["Configurations with more than one cell (seeds) show the mean.", ""]
    missing = [m for m in view.required if m not in run.metrics] if view else []
    if view and not missing:
        plt = figures.pyplot()
        files[f"{run.experiment}.png"] = png_bytes(view.figure(run, plt), plt)
        md += [f"![{run.experiment}]({run.experiment}.png)", "", tables.markdown(view.table(run)), ""]
    else:
        if missing:
            md += [f"The {run.experiment} figure needs metric columns this run lacks: {', '.join(missing)}; "
                   "every metric per configuration instead.", ""]
        md += [tables.markdown(tables.generic_table(run)), ""]
    if run.failed:
        md += ["## Failed cells", "", tables.markdown(tables.Table(["cell", "error"], [
            {"cell": c, "error": (e or "").splitlines()[-1] if e else ""} for c, e in run.failed])), ""]
    md += ["Every metric per configuration: [metrics.csv](metrics.csv).", ""]
    files["metrics.csv"] = tables.to_csv(tables.generic_table(run))
    text = "\n".join(md)
    files["report.md"] = text.encode()
    return text, files


def write_report(out: Path, files: dict) -> None:
    """Write ``files`` into a temporary directory beside ``out`` and rename it into place
    (an older report there is renamed aside first and removed after)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    old = out.parent / f".{out.name}.{os.getpid()}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    if out.exists():
        os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def report(results, experiment: str, run_id: str | None = None, out=None, conf_dir=None) -> Path:
    """Make the report of one run; returns its directory."""
    spec = load_spec(experiment, conf_dir)
    run = load_run(results, experiment, run_id, spec.keys)
    _, files = build(run, spec)
    out = Path(out) if out else Path(results) / "reports" / experiment / run.run_id
    write_report(out, files)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.report", description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", required=True, help="experiment name (conf/experiment/NAME.yaml)")
    ap.add_argument("--results", default="./results", help="results directory (default ./results)")
    ap.add_argument("--out", help="output directory (default RESULTS/reports/EXPERIMENT/RUN_ID)")
    ap.add_argument("--run", help="run_id (default: the experiment's latest run with rows)")
    args = ap.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"error: results directory {args.results} does not exist; pass --results DIR", file=sys.stderr)
        return 1
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"error: --out {args.out} is a file; give a directory", file=sys.stderr)
        return 2
    try:
        out = report(args.results, args.experiment, args.run, args.out)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"report {args.experiment}: {out / 'report.md'}")
    if "**Incomplete:**" in (out / "report.md").read_text():
        print("warning: the run reused cells of earlier runs; the report lacks them (see report.md)",
              file=sys.stderr)
    return 0
