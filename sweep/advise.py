"""``python -m sweep.advise``: which page size should each process of a captured machine get?

    python -m sweep.advise --snapshot machine.npz [--results DIR] [--profile COMM_OR_PID=WORKLOAD ...]
                           [--default-profile WORKLOAD] [--max-memory 0.10] [--min-saving 0.05]
                           [--free 0.01] [--out DIR]

The thread asks who decides a process's page size (the sysadmin, with a setarch-like
wrapper); this gives the sysadmin the numbers. For each captured process and each
process page size (4K, 16K, 64K on a 4K kernel, the proposal's native page table as a
mirror):

- memory: the process replayed alone (sweep.snapshot + workload.kind=snapshot under the
  machine_replay experiment's config): total bytes at 16K / 64K against 4K (anon, page
  cache of the files it maps, padding, Linux + native page tables). Page cache the
  process shares with others is charged to it whole, so a shared library's rounding
  counts against every process that maps it: an upper bound on that part.
- translation: where the process has an access profile (``--profile comm=workload``,
  or ``--default-profile``), the walk_cycles of that workload at 16K / 64K against 4K
  on the 4K kernel, from the latest run of ``--experiment`` (default page_size_tradeoff)
  under ``--results``.

Rule: with a profile, the size with the largest translation saving whose memory
overhead is at most --max-memory, if that saving is at least --min-saving, else 4K
(basis "profile"); without one, the largest size whose memory overhead is at most
--free (basis "memory only": a larger page never costs translation, so it is taken when
it is free). Writes advice.md (table), advice.csv and advice.png into --out (default
./advice), built under a temporary name and renamed into place; prints the table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SIZES = (4096, 16384, 65536)
NAMES = {4096: "4K", 16384: "16K", 65536: "64K"}


class AdviceError(Exception):
    """Bad input to the advisor; the message says what to fix."""


@dataclass
class Advice:
    pid: int
    comm: str
    total: dict = field(default_factory=dict)        # page size -> total_bytes of the replay
    anon: dict = field(default_factory=dict)
    profile: str | None = None
    cycles: dict = field(default_factory=dict)       # page size -> walk_cycles (profile), empty without
    choice: int = 4096
    basis: str = "memory only"

    def overhead(self, size: int) -> float:
        return self.total[size] / self.total[4096] - 1 if self.total.get(4096) else 0.0

    def saving(self, size: int) -> float | None:
        if not self.cycles.get(4096) or size not in self.cycles:
            return None
        return 1 - self.cycles[size] / self.cycles[4096]


_CONFIGS: dict = {}


def replay_config(snapshot_path: str, page_size: str) -> dict:
    """The cell config of machine_replay for one process page size on the 4K kernel
    (composed once per page size; the snapshot path is the only part that changes)."""
    import copy

    if page_size not in _CONFIGS:
        _CONFIGS[page_size] = _compose(page_size)
    cfg = copy.deepcopy(_CONFIGS[page_size])
    cfg["workload"]["path"] = snapshot_path
    return cfg


def _compose(page_size: str) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from sweep.app import CONF_DIR
    from sweep.plan import semantic_config
    from sweep.schema import register_configs

    register_configs(CONF_DIR)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="advise"):
        cfg = compose("config", overrides=["+experiment=machine_replay", "kernel=4k", f"process.page_size={page_size}",
                                           "folio=base", "folio.readahead=0"])
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return semantic_config(resolved)


def measure_memory(snap, progress: bool = True) -> list:
    """[Advice] with total and anon bytes per page size, one replay per process and size."""
    from tqdm import tqdm

    from kernel_model.simulate import simulate
    from sweep.snapshot import write_atomic

    out = []
    with tempfile.TemporaryDirectory(prefix="advise-") as tmp:
        bar = tqdm(total=len(snap.pids) * len(SIZES), desc="replay", unit="cell", disable=not progress,
                   file=sys.stderr)
        for pid, comm in zip(snap.pids, snap.a["proc_comm"].tolist()):
            path = Path(tmp) / f"{pid}.npz"
            write_atomic(path, snap.select([pid]).a)
            adv = Advice(pid, comm)
            for size in SIZES:
                metrics = simulate(replay_config(str(path), "kernel" if size == 4096 else NAMES[size]))
                adv.total[size], adv.anon[size] = metrics["total_bytes"], metrics["anon_bytes"]
                bar.update()
            out.append(adv)
        bar.close()
    return out


def translation_costs(results, experiment: str) -> dict:
    """{workload: {process page size: walk_cycles}} on the 4K kernel: per workload and size,
    the mean over the seeds of the newest run of ``experiment`` that has it."""
    from sweep.report.load import experiment_rows

    by: dict = {}
    for r in experiment_rows(results, experiment):       # oldest first: a newer run replaces
        if r["status"] != "ok" or r.get("kernel_page_size") != 4096 or r.get("walk_cycles") is None:
            continue
        runs = by.setdefault(r["workload_name"], {}).setdefault(r["process_page_size"], {})
        if r["run_id"] not in runs:
            runs.clear()
        runs.setdefault(r["run_id"], []).append(r["walk_cycles"])
    out: dict = {}
    for wl, sizes in by.items():
        for size, runs in sizes.items():
            (cycles,) = runs.values()
            out.setdefault(wl, {})[size] = sum(cycles) / len(cycles)
    return out


def parse_profiles(items) -> dict:
    out = {}
    for item in items or ():
        key, sep, workload = item.partition("=")
        if not sep or not key or not workload:
            raise AdviceError(f"--profile {item!r}: write COMM=WORKLOAD or PID=WORKLOAD, e.g. --profile postgres=zipf")
        out[key] = workload
    return out


def decide(adv: Advice, max_memory: float, min_saving: float, free: float) -> None:
    fits = [s for s in SIZES if adv.overhead(s) <= max_memory]
    if adv.cycles:
        best = max(fits, key=lambda s: ((adv.saving(s) or 0.0), -s))
        adv.choice = best if (adv.saving(best) or 0.0) >= min_saving else 4096
        adv.basis = "profile"
    else:
        adv.choice = max(s for s in SIZES if adv.overhead(s) <= free or s == 4096)
        adv.basis = "memory only"


def pct(x) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def table(advice: list):
    from sweep.report.tables import Table

    columns = ["process", "pid", "total 4K (KiB)", "16K memory", "64K memory", "16K walk_cycles",
               "64K walk_cycles", "profile", "recommend", "basis"]
    rows = []
    for a in advice:
        rows.append({"process": a.comm, "pid": a.pid, "total 4K (KiB)": a.total[4096] // 1024,
                     "16K memory": pct(a.overhead(16384)), "64K memory": pct(a.overhead(65536)),
                     "16K walk_cycles": pct(None if a.saving(16384) is None else -a.saving(16384)),
                     "64K walk_cycles": pct(None if a.saving(65536) is None else -a.saving(65536)),
                     "profile": a.profile or "none", "recommend": NAMES[a.choice], "basis": a.basis})
    return Table(columns, rows)


CHOICE_COLORS = {4096: "tab:gray", 16384: "tab:blue", 65536: "tab:green"}


def figure(advice: list, max_memory: float = 0.10, top: int = 30):
    """Per process (the `top` largest at 4K): memory overhead of 16K and 64K (left) and the
    translation change of its profile (right); the label says the recommendation."""
    from sweep.report.figures import pyplot

    plt = pyplot()
    shown = sorted(advice, key=lambda a: -a.total[4096])[:top][::-1]
    labels = [f"{a.comm} ({a.pid}) -> {NAMES[a.choice]}" for a in shown]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, max(4.0, 0.38 * len(shown) + 2)), sharey=True,
                                      layout="constrained")
    ys = range(len(shown))
    for ax, values, title in (
            (left, lambda a, s: a.overhead(s) * 100, "memory vs 4K (%)"),
            (right, lambda a, s: None if a.saving(s) is None else -a.saving(s) * 100,
             "walk_cycles vs 4K (%, negative = saved)")):
        for i, (size, color) in enumerate(((16384, "tab:blue"), (65536, "tab:green"))):
            vals = [values(a, size) for a in shown]
            ax.barh([y + (i - 0.5) * 0.4 for y in ys], [0 if v is None else v for v in vals], 0.4,
                    color=color, label=NAMES[size])
            for y, v in zip(ys, vals):
                if v is None and i == 1:
                    ax.text(0, y, " no profile", va="center", fontsize=8, color="0.4")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(title)
    left.axvline(max_memory * 100, color="tab:red", linestyle="--", linewidth=1,
                 label=f"budget {max_memory * 100:g}%")
    for ax in (left, right):
        ax.legend(fontsize=9, loc="lower right")
    left.set_yticks(list(ys), labels, fontsize=9)
    for tick, a in zip(left.get_yticklabels(), shown):
        tick.set_color(CHOICE_COLORS[a.choice])
    fig.suptitle("page size per process: memory cost (left) and translation cost (right) of 16K and 64K "
                 "on a 4K kernel; label = recommendation (gray 4K, blue 16K, green 64K)")
    return fig, plt


def advise(snapshot: str, results=None, experiment: str = "page_size_tradeoff", profiles=None,
           default_profile=None, max_memory=0.10, min_saving=0.05, free=0.01, progress=True) -> list:
    from sweep.snapshot import Snapshot

    snap = Snapshot.load(snapshot)
    profiles = dict(profiles or {})
    costs = {}
    if profiles or default_profile:
        if results is None:
            raise AdviceError("--profile/--default-profile need --results DIR with a run of "
                              f"{experiment} (walk_cycles per workload and process page size)")
        costs = translation_costs(results, experiment)
        for wl in set(profiles.values()) | ({default_profile} if default_profile else set()):
            if wl not in costs or 4096 not in costs[wl]:
                raise AdviceError(f"workload {wl!r} has no 4K-kernel walk_cycles in the latest {experiment} run "
                                  f"under {results}; its workloads: {', '.join(sorted(costs)) or 'none'}")
    comms = set(snap.a["proc_comm"].tolist())
    for key in profiles:
        if key not in comms and not (key.isdigit() and int(key) in snap.pids):
            raise AdviceError(f"--profile {key}=...: no process named or numbered {key!r} in {snapshot}")
    advice = measure_memory(snap, progress)
    for a in advice:
        a.profile = profiles.get(str(a.pid)) or profiles.get(a.comm) or default_profile
        if a.profile:
            a.cycles = dict(costs[a.profile])
        decide(a, max_memory, min_saving, free)
    return advice


def write(out, advice: list, max_memory: float = 0.10) -> None:
    from sweep.report import png_bytes, write_report
    from sweep.report.tables import markdown, to_csv

    t = table(advice)
    fig, plt = figure(advice, max_memory)

    md = ["# Page size per process", "",
          "Memory: each process replayed alone on a 4K kernel at 16K and 64K against 4K (shared page cache "
          "charged whole). walk_cycles: the change for the process's access profile, where it has one. "
          "A negative walk_cycles change is a saving.", "", "![advice](advice.png)", "", markdown(t), ""]
    write_report(out, {"advice.md": "\n".join(md).encode(), "advice.csv": to_csv(t), "advice.png": png_bytes(fig, plt)})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.advise", description=__doc__.splitlines()[0])
    ap.add_argument("--snapshot", required=True, help="a capture of python -m sweep.snapshot")
    ap.add_argument("--results", help="results directory with a run of --experiment (translation costs)")
    ap.add_argument("--experiment", default="page_size_tradeoff")
    ap.add_argument("--profile", action="append", metavar="COMM_OR_PID=WORKLOAD",
                    help="the process's access profile: a workload_name of the results (repeatable)")
    ap.add_argument("--default-profile", metavar="WORKLOAD", help="profile of every process without --profile")
    ap.add_argument("--max-memory", type=float, default=0.10, help="memory overhead allowed with a profile")
    ap.add_argument("--min-saving", type=float, default=0.05, help="walk_cycles saving a larger page must bring")
    ap.add_argument("--free", type=float, default=0.01, help="memory overhead taken without a profile")
    ap.add_argument("--out", default="./advice", help="output directory (default ./advice)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from sweep.report.load import ReportError
    from sweep.report.tables import fmt
    from sweep.snapshot import SnapshotError

    try:
        advice = advise(args.snapshot, args.results, args.experiment, parse_profiles(args.profile),
                        args.default_profile, args.max_memory, args.min_saving, args.free,
                        progress=not args.no_progress)
    except (AdviceError, SnapshotError, ReportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write(args.out, advice, args.max_memory)
    t = table(advice)
    widths = [max(len(c), *(len(fmt(r[c])) for r in t.rows)) for c in t.columns]
    print("  ".join(c.ljust(w) for c, w in zip(t.columns, widths)))
    for r in t.rows:
        print("  ".join(fmt(r[c]).ljust(w) for c, w in zip(t.columns, widths)))
    print(f"advice: {Path(args.out) / 'advice.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
