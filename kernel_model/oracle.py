"""The running kernel as the oracle: replay a pattern on the host and in the model, side by side.

    python -m kernel_model.oracle --pattern uniform --mode off --mode pmd
    python -m kernel_model.oracle --all --size 16M
    python -m kernel_model.oracle --trace run.txt.gz --mode mthp --set-thp mthp=64K
    python -m kernel_model.oracle --scenario file_seq --scenario fork_cow

The host side is a small C program (oracle_harness.c, package data) compiled at run time
into a cache directory; it maps a PMD-aligned region, madvises it, replays one-byte loads
and stores in order and prints the minor faults (getrusage around exactly the replay), the
region's Rss/Anonymous/AnonHugePages from /proc/self/smaps and, when PFNs are readable
(root), the folios mapped there from /proc/self/pagemap + /proc/kpageflags.

The model side runs the same steps (kernel_model.oracle_scenarios) under the model config
that matches the host's THP knobs (/sys/kernel/mm/transparent_hugepage: enabled,
hugepages-<size>kB/enabled, use_zero_page, defrag): folio.anon, folio.mthp_sizes,
folio.thp_pmd, the huge zero page. The knobs are only read, unless --set-thp is given;
then the old values are written back on exit, on an error and on SIGINT/SIGTERM.

Modes: off = MADV_NOHUGEPAGE; pmd = MADV_HUGEPAGE (PMD THP needs enabled=madvise or
always); mthp = no madvise (what the per-size knobs allow for a plain mapping).
Exit status: 0 every row exact, 1 some row differs, 2 not runnable here (not Linux, no C
compiler, not a 4K x86-64/arm64 kernel) or bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from workloads.trace import read_chunks

from .oracle_scenarios import FILE_SIZE, PAGE, PATTERNS, PMD, SCENARIOS, Step, anon_steps, pattern, run_model, \
    scenario_steps
from .system import Policy
from .units import parse_size

THP = Path("/sys/kernel/mm/transparent_hugepage")
HARNESS = Path(__file__).with_name("oracle_harness.c")
MODES = {"off": "nohugepage", "pmd": "hugepage", "mthp": None}


class Unavailable(Exception):
    """The oracle cannot run on this host (one line, exit status 2)."""


# -- the host's THP knobs ---------------------------------------------------------------

def _selected(text: str) -> str:
    """The bracketed choice of a sysfs multiple-choice file ("always [madvise] never")."""
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return text.strip()


def host_thp(root: Path = THP) -> dict:
    """The THP knobs: enabled, defrag, use_zero_page, per-size enabled (bytes -> value) and
    the extra anon_beside_full knob of some kernels (None when absent)."""
    if not (root / "enabled").exists():
        return {"enabled": "never", "defrag": "never", "use_zero_page": False, "sizes": {},
                "anon_beside_full": None}
    sizes = {}
    for d in sorted(root.glob("hugepages-*kB")):
        if (d / "enabled").exists():
            sizes[int(d.name[len("hugepages-"):-2]) * 1024] = _selected((d / "enabled").read_text())
    beside = root / "anon_beside_full"
    return {"enabled": _selected((root / "enabled").read_text()),
            "defrag": _selected((root / "defrag").read_text()),
            "use_zero_page": (root / "use_zero_page").read_text().strip() == "1",
            "sizes": sizes, "anon_beside_full": int(beside.read_text()) if beside.exists() else None}


def size_enabled(host: dict, size: int, advice: str | None) -> bool:
    """mm/huge_memory.c __thp_vma_allowable_orders() for an anonymous VMA: an order is
    allowed when its knob is always, or madvise with VM_HUGEPAGE; inherit follows the
    top-level enabled; VM_NOHUGEPAGE forbids every order."""
    if advice == "nohugepage":
        return False
    value = host["sizes"].get(size, "never")
    if value == "inherit":
        value = host["enabled"]
    return value == "always" or (value == "madvise" and advice == "hugepage")


def model_policy(host: dict, advice: str | None):
    """The system.Policy of the model that matches the host knobs for a region madvised `advice`."""
    on = [s for s in sorted(host["sizes"]) if s < PMD and size_enabled(host, s, advice)]
    return Policy(anon="mthp" if on else "base", mthp_sizes=tuple(on) or (16384, 32768, 65536),
                  thp_pmd=size_enabled(host, PMD, advice), huge_zero_page=host["use_zero_page"])


def describe_host(host: dict) -> str:
    sizes = ",".join(f"{s // 1024}K={v}" for s, v in sorted(host["sizes"].items()) if v != "never")
    extra = "" if host["anon_beside_full"] is None else f" anon_beside_full={host['anon_beside_full']}"
    return (f"host THP: enabled={host['enabled']} defrag={host['defrag']} use_zero_page={int(host['use_zero_page'])}"
            f" sizes: {sizes or 'all never'}{extra}")


def parse_set_thp(values: list[str], host: dict) -> dict:
    """--set-thp values -> {sysfs path: new value}. never|madvise|always set the top-level
    enabled; mthp=SIZE[,SIZE...] sets those hugepages-<size>kB to always and every other
    size below the PMD size to never; pmd=VALUE sets hugepages-2048kB."""
    out = {}
    for v in values:
        if v in ("never", "madvise", "always"):
            out[THP / "enabled"] = v
        elif v.startswith("mthp="):
            want = {parse_size(s, what="--set-thp mthp") for s in v[5:].split(",") if s}
            bad = sorted(want - set(host["sizes"]))
            if bad:
                raise ValueError(f"--set-thp: no hugepages-<size>kB knob for {bad} on this host")
            for s in host["sizes"]:
                if s < PMD:
                    out[THP / f"hugepages-{s // 1024}kB" / "enabled"] = "always" if s in want else "never"
        elif v.startswith("pmd=") and v[4:] in ("never", "madvise", "always", "inherit"):
            out[THP / f"hugepages-{PMD // 1024}kB" / "enabled"] = v[4:]
        else:
            raise ValueError(f"--set-thp: {v!r} is not never|madvise|always|mthp=SIZE,..|pmd=VALUE")
    return out


@contextmanager
def thp_settings(changes: dict):
    """Write the knobs, and write the old values back however the block ends (an
    exception, SIGINT, SIGTERM)."""
    old = {p: _selected(p.read_text()) for p in changes}
    prev_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    try:
        if changes:
            signal.signal(signal.SIGTERM, on_term)
        for p, v in changes.items():
            p.write_text(v)
        yield
    finally:
        for p, v in old.items():
            try:
                p.write_text(v)
            except OSError as e:
                print(f"oracle: could not restore {p} to {v}: {e}", file=sys.stderr)
        if changes:
            signal.signal(signal.SIGTERM, prev_term)


# -- the harness --------------------------------------------------------------------------

def check_host() -> None:
    """Raise Unavailable unless this is Linux with a C compiler and 4K pages."""
    if platform.system() != "Linux":
        raise Unavailable(f"oracle: needs Linux (this is {platform.system()}): the running kernel is the oracle")
    if not compiler():
        raise Unavailable("oracle: no C compiler (cc, gcc or $CC) to build the replay harness")
    if os.sysconf("SC_PAGE_SIZE") != PAGE:
        raise Unavailable(f"oracle: the host kernel's page size is {os.sysconf('SC_PAGE_SIZE')}, "
                          f"the oracle compares 4K kernels only")


def compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pagesweep" / "oracle"


def harness_binary() -> Path:
    """The compiled harness, built once per source version into the cache directory:
    compiled to a temporary name in the same directory, then renamed into place."""
    src = HARNESS.read_bytes()
    cc = compiler()
    key = hashlib.sha256(src + cc.encode() + platform.machine().encode()).hexdigest()[:16]
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    exe = d / f"oracle_harness-{key}"
    if exe.exists():
        return exe
    fd, tmp = tempfile.mkstemp(prefix=".harness-", dir=d)
    os.close(fd)
    try:
        r = subprocess.run([cc, "-O2", "-o", tmp, str(HARNESS)], capture_output=True, text=True)
        if r.returncode:
            raise Unavailable(f"oracle: compiling {HARNESS.name} failed: {r.stderr.strip().splitlines()[-1:]}")
        os.replace(tmp, exe)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return exe


def run_kernel(steps: list[Step], workdir: Path) -> dict:
    """Run steps in the harness; the same shape as oracle_scenarios.run_model()."""
    lines, nfile = [], 0
    for st in steps:
        if st.op == "map":
            kind = st.kind
            lines.append(f"map {st.rid} {kind} {st.length}" + (f" {st.path}" if st.path else ""))
        elif st.op == "madvise":
            lines.append(f"madvise {st.rid} {st.offset} {st.length} {st.advice}")
        elif st.op == "mprotect":
            lines.append(f"mprotect {st.rid} {st.offset} {st.length} {st.prot}")
        elif st.op == "access":
            path = workdir / f"access{nfile}.bin"
            nfile += 1
            ((st.offsets.astype(np.int64) << 1) | st.is_write.astype(np.int64)).astype("<i8").tofile(path)
            lines.append(f"access {st.rid} {path} 0 {st.offsets.size}")
        elif st.op == "fork":
            lines.append("fork")
        elif st.op == "report":
            lines += [f"report {st.rid}", f"folios {st.rid}"]
        elif st.op == "layout":
            lines.append(f"layout {st.rid}")
    script = workdir / "script"
    script.write_text("\n".join(lines) + "\n")
    r = subprocess.run([str(harness_binary()), str(script)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"oracle harness failed (status {r.returncode}): {r.stderr.strip()}")
    return parse_output(r.stdout)


def parse_output(text: str) -> dict:
    out = {"access": [], "report": {}}
    for line in text.splitlines():
        w = line.split()
        if w[0] == "access":
            out["access"].append(int(w[3]))
        elif w[0] == "report":
            vals = dict(zip(w[2::2], map(int, w[3::2])))
            out["report"].setdefault(int(w[1]), {}).update(rss=vals["rss"], anon=vals["anon"],
                                                          anonhuge=vals["anonhuge"])
        elif w[0] == "layout":
            out["layout"] = None if w[2] == "unavailable" else [tuple(map(int, t.split(":"))) for t in w[2:]]
        elif w[0] == "folios":
            rep = out["report"].setdefault(int(w[1]), {})
            if w[2] == "unavailable":
                rep["folios"] = None
                continue
            sizes = dict(tuple(map(int, t.split(":"))) for t in w[8:])
            rep["folios"] = {"pages": int(w[3]), "zero": int(w[5]), "hugezero": int(w[7]),
                             "sizes": dict(sorted(sizes.items()))}
    return out


# -- one comparison -----------------------------------------------------------------------

TMPFS = Path("/dev/shm")


def make_file(path: Path) -> None:
    """The file of the file scenarios, written and then read whole so that all of it is
    in the page cache before the replay (the model reads it whole too). It lives on tmpfs
    (huge=never: order-0 folios, which the model's file gets too): a disk filesystem with
    large folios (ext4 since 6.16) caches it in folios of the write path's sizes, which
    the model does not reproduce."""
    data = np.arange(FILE_SIZE // 8, dtype=np.uint64).tobytes()
    # written in chunks of uneven sizes, so that a filesystem with large folios caches it
    # in folios of several orders (the write path sizes a folio by the write)
    chunks = (12 << 10, 52 << 10, 100 << 10, 4 << 10, 300 << 10, 20 << 10, 1 << 20)
    with open(path, "wb") as f:
        pos = i = 0
        while pos < len(data):
            f.write(data[pos:pos + chunks[i % len(chunks)]])
            pos += chunks[i % len(chunks)]
            i += 1
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def host_file_layout(path: Path, workdir: Path) -> list | None:
    """The page-cache folios of the cached file at path, [(index, nr_pages)], read by
    mapping it whole and reading /proc/kpageflags (None when PFNs are not readable)."""
    pages = np.arange(FILE_SIZE // PAGE, dtype=np.int64) * PAGE
    steps = [Step("map", 0, kind="file", length=FILE_SIZE, path=str(path)),
             Step("madvise", 0, 0, FILE_SIZE, advice="nohugepage"),
             Step("access", 0, offsets=pages, is_write=np.zeros(pages.size, bool)), Step("layout", 0)]
    return run_kernel(steps, workdir).get("layout")


def compare(label: str, steps: list[Step], host: dict, advice: str | None, workdir: Path) -> dict:
    """Run steps on the kernel and in the model; the row of the table."""
    kernel = run_kernel(steps, workdir)
    model = run_model(steps, model_policy(host, advice))
    row = {"label": label, "kernel": _summary(kernel), "model": _summary(model)}
    keys = ("faults", "anon", "anonhuge", "rss")
    row["exact"] = all(row["kernel"][k] == row["model"][k] for k in keys + ("step_faults",))
    kf, mf = row["kernel"]["folios"], row["model"]["folios"]
    row["folios_exact"] = None if kf is None else kf == mf
    return row


def _summary(res: dict) -> dict:
    """Faults over every replay step; bytes and folios summed over the regions reported."""
    reps = list(res["report"].values())
    out = {"faults": sum(res["access"]), "step_faults": res["access"]}
    for key in ("anon", "anonhuge", "rss"):
        out[key] = sum(r[key] for r in reps)
    out["folios"] = None
    if all(r["folios"] is not None for r in reps):
        sizes = {}
        for r in reps:
            for s, n in r["folios"]["sizes"].items():
                sizes[s] = sizes.get(s, 0) + n
        out["folios"] = {k: sum(r["folios"][k] for r in reps) for k in ("pages", "zero", "hugezero")}
        out["folios"]["sizes"] = dict(sorted(sizes.items()))
    return out


def _folio_text(f: dict | None) -> str:
    if f is None:
        return "n/a"
    parts = [f"{s // 1024}K:{n}" for s, n in f["sizes"].items()]
    if f["zero"]:
        parts.append(f"zero:{f['zero']}")
    if f["hugezero"]:
        parts.append(f"hzero:{f['hugezero'] // 512}")
    return " ".join(parts) or "-"


def format_table(rows: list[dict]) -> str:
    head = ("case", "faults k/m", "Anonymous k/m", "AnonHuge k/m", "Rss k/m", "folios kernel", "folios model", "exact")
    body = []
    for r in rows:
        k, m = r["kernel"], r["model"]
        fol = "" if r["folios_exact"] is None else ("" if r["folios_exact"] else " (folios differ)")
        body.append((r["label"], f"{k['faults']}/{m['faults']}", f"{k['anon']}/{m['anon']}",
                     f"{k['anonhuge']}/{m['anonhuge']}", f"{k['rss']}/{m['rss']}", _folio_text(k["folios"]),
                     _folio_text(m["folios"]), ("yes" if r["exact"] else "NO") + fol))
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    fmt = " | ".join(f"{{:{w}}}" for w in widths)
    lines = [fmt.format(*head), "-+-".join("-" * w for w in widths)]
    lines += [fmt.format(*row) for row in body]
    return "\n".join(lines)


TRACE_GAP = 1 << 30  # untouched address space that separates two regions of a trace
MAX_TRACE_REGIONS = 16  # the harness's region table


def trace_steps(path: str, advice: str | None) -> list[Step]:
    """A trace in the project's formats (workloads/trace.py) as regions: addresses more
    than TRACE_GAP apart (heap and stack) go to separate regions, each from the 2 MiB
    boundary below its lowest address to the page after its highest, so the offsets keep
    their alignment and THP and mTHP ranges fall where they fell in the traced program.
    Each region's accesses are replayed in trace order (regions do not interact)."""
    addrs, writes = [], []
    for chunk_addrs, chunk_writes in read_chunks(path):
        addrs.append(chunk_addrs)
        writes.append(chunk_writes)
    if not addrs:
        raise ValueError(f"{path}: the trace has no data accesses")
    a, w = np.concatenate(addrs), np.concatenate(writes)
    pages = np.unique(a // PAGE)
    cuts = np.flatnonzero(np.diff(pages) * PAGE > TRACE_GAP) + 1
    groups = np.split(pages, cuts)
    if len(groups) > MAX_TRACE_REGIONS:
        raise ValueError(f"{path}: the trace has {len(groups)} address clusters more than 1 GiB apart; "
                         f"the oracle replays at most {MAX_TRACE_REGIONS}")
    steps = []
    for rid, g in enumerate(groups):
        base = int(g[0]) * PAGE & ~(PMD - 1)
        length = (int(g[-1]) + 1) * PAGE - base
        sel = (a >= base) & (a < base + length)
        steps.append(Step("map", rid, kind="anon", length=length))
        if advice:
            steps.append(Step("madvise", rid, 0, length, advice=advice))
        steps.append(Step("access", rid, offsets=a[sel] - base, is_write=w[sel]))
    return steps + [Step("report", rid) for rid in range(len(groups))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernel_model.oracle", description=__doc__.split("\n")[0])
    ap.add_argument("--pattern", action="append", default=[], help=f"one of {', '.join(PATTERNS)} (repeatable)")
    ap.add_argument("--scenario", action="append", default=[], help=f"one of {', '.join(SCENARIOS)} (repeatable)")
    ap.add_argument("--all", action="store_true", help="every pattern and every scenario")
    ap.add_argument("--trace", help="a trace file (lackey text, .gz, .npy, .npz)")
    ap.add_argument("--mode", action="append", choices=sorted(MODES), help="off, pmd, mthp (repeatable; default off, pmd)")
    ap.add_argument("--size", default="16M", help="region size for patterns and scenarios (default 16M)")
    ap.add_argument("--accesses", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-ratio", type=float, default=0.3)
    ap.add_argument("--set-thp", action="append", default=[], metavar="SPEC",
                    help="never|madvise|always|mthp=SIZE,..|pmd=VALUE: change the host knobs for the run "
                         "(root); the old values are restored on exit")
    args = ap.parse_args(argv)
    try:
        check_host()
        size = parse_size(args.size, what="--size")
        if size % PMD:
            raise ValueError(f"--size: must be a multiple of 2M, got {args.size}")
        modes = args.mode or ["off", "pmd"]
        pats = list(PATTERNS) if args.all else args.pattern
        scens = list(SCENARIOS) if args.all else args.scenario
        if not (pats or scens or args.trace):
            pats = ["uniform"]
        for p in pats:
            if p not in PATTERNS:
                raise ValueError(f"--pattern: unknown pattern {p!r}; known: {', '.join(PATTERNS)}")
        for s in scens:
            if s not in SCENARIOS:
                raise ValueError(f"--scenario: unknown scenario {s!r}; known: {', '.join(SCENARIOS)}")
        changes = parse_set_thp(args.set_thp, host_thp())
    except Unavailable as e:
        print(e)
        return 2
    except ValueError as e:
        print(f"oracle: {e}", file=sys.stderr)
        return 2
    try:
        with thp_settings(changes), tempfile.TemporaryDirectory(prefix="pagesweep-oracle-") as tmp:
            host = host_thp()
            print(describe_host(host))
            if host["anon_beside_full"]:
                print("note: anon_beside_full=1 (not an upstream knob: an mTHP order is used only beside a "
                      "fully populated range of that order); the model implements the upstream rule")
            work = Path(tmp)
            rows = []
            for mode in modes:
                adv = MODES[mode]
                for p in pats:
                    off, wr = pattern(p, size, args.accesses, args.seed, args.write_ratio)
                    rows.append(compare(f"{p} {mode}", anon_steps(off, wr, size, adv), host, adv, work))
                if args.trace:
                    rows.append(compare(f"trace {mode}", trace_steps(args.trace, adv), host, adv, work))
                for s in scens:
                    large = s.startswith("file_large")
                    fpath = (work if large else TMPFS) / f"pagesweep-oracle-{os.getpid()}"
                    layout = None
                    if s.startswith("file"):
                        if not fpath.parent.is_dir():
                            print(f"{s}: skipped, no tmpfs at {TMPFS}")
                            continue
                        make_file(fpath)
                        if large:
                            layout = host_file_layout(fpath, work)
                            if layout is None:
                                print(f"{s}: skipped, the host's folios need readable PFNs (root)")
                                fpath.unlink()
                                continue
                    fadv = "nohugepage" if s.startswith("file") else adv
                    try:
                        rows.append(compare(f"{s} {mode}",
                                            scenario_steps(s, size, args.seed, adv, str(fpath), layout),
                                            host, fadv, work))
                    finally:
                        if fpath.exists():
                            fpath.unlink()
            print(format_table(rows))
            return 0 if all(r["exact"] for r in rows) else 1
    except Unavailable as e:
        print(e)
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"oracle: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
