"""Cell rows and run rows as Parquet under results.dir.

Layout (hive partitions, read by sweep.query with union_by_name)::

    <dir>/experiment=<name>/date=<YYYY-MM-DD>/<run_id>-<part>.parquet   table cells
    <dir>/runs/date=<YYYY-MM-DD>/<run_id>.parquet                       table runs

Every file is written under a hidden temporary name in its final directory and
os.replace()d into place, so a reader never sees a half-written file under a final
name. Parts 00001, 00002, ... are flushed as cells finish; at the end of a run they are
compacted into part 00000 (written and renamed first, parts unlinked after). A crash
between the two leaves part 00000 beside parts it already holds: ``repair()`` unlinks
such parts before the next run reads anything.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import typing
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kernel_model.units import parse_size
from sweep.schema import NON_SEMANTIC_KEYS, SIZE_KEYS, page_sizes, schema_fields

COMPACT_PART = 0

# Provenance and bookkeeping columns of every cell row, in order.
PROVENANCE = [
    ("run_id", pa.string()), ("cell_key", pa.string()), ("config_key", pa.string()),
    ("cell", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("attempts", pa.int64()), ("duration_s", pa.float64()), ("git_sha", pa.string()),
    ("model_version", pa.string()), ("package_versions", pa.string()), ("host", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")), ("config_json", pa.string()),
    ("reused_from", pa.string()),  # run_id whose row this copies (a cell done by another experiment)
]

RUN_COLUMNS = [
    ("run_id", pa.string()), ("experiment", pa.string()), ("overrides", pa.string()),
    ("executor", pa.string()), ("cells_planned", pa.int64()), ("cells_done_before", pa.int64()),
    ("cells_to_run", pa.int64()), ("cells_reused", pa.int64()), ("cells_ok", pa.int64()),
    ("cells_failed", pa.int64()),
    ("cells_skipped", pa.int64()), ("cells_excluded", pa.int64()), ("status", pa.string()),
    ("exit_status", pa.int64()), ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")), ("git_sha", pa.string()),
    ("model_version", pa.string()), ("host", pa.string()), ("pid", pa.int64()),
    ("error", pa.string()),   # why a run with status 'failed' stopped (e.g. an OSError writing results)
]


def _arrow_type(key: str, tp) -> pa.DataType:
    if key in SIZE_KEYS or key == "process.page_size":
        return pa.int64()                       # bytes
    origin = typing.get_origin(tp)
    if origin is typing.Union:                  # Optional[X]
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
        origin = typing.get_origin(tp)
    if origin in (list, typing.List):
        return pa.string()                      # "16K,32K,64K"
    return {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}[tp]


# (column name, dotted key, arrow type) of the flattened config, from the schema.
CONFIG_COLUMNS = [(key.replace(".", "_"), key, _arrow_type(key, tp))
                  for key, tp in schema_fields() if key.split(".")[0] not in NON_SEMANTIC_KEYS]


def flatten_config(config: dict) -> dict:
    """The config as typed columns: sizes in bytes, process page size resolved."""
    kps, pps = page_sizes(config)
    row = {}
    for column, key, typ in CONFIG_COLUMNS:
        node = config
        for part in key.split("."):
            node = node[part]
        if key == "kernel.page_size":
            node = kps
        elif key == "process.page_size":
            node = pps
        elif key in SIZE_KEYS:
            node = parse_size(node, what=key)
        elif isinstance(node, list):
            node = ",".join(str(x) for x in node)
        row[column] = node
    return row


RESERVED = {c for c, _, _ in CONFIG_COLUMNS} | {c for c, _ in PROVENANCE}


def metric_column(name: str) -> str:
    return f"metric_{name}" if name in RESERVED else name


def cells_table(rows: list) -> pa.Table:
    """Rows (dicts with provenance, config columns and a ``metrics`` dict) as a table.

    Config and provenance columns have fixed types from the schema; metric columns take
    the type pyarrow infers over the rows (a failed row's metrics are null).
    """
    columns, fields = {}, []
    for name, typ in PROVENANCE + [(c, t) for c, _, t in CONFIG_COLUMNS]:
        columns[name] = pa.array([r.get(name) for r in rows], type=typ)
        fields.append(pa.field(name, typ))
    metric_names = []
    for r in rows:
        for name in r.get("metrics") or {}:
            if name not in metric_names:
                metric_names.append(name)
    for name in metric_names:
        arr = pa.array([(r.get("metrics") or {}).get(name) for r in rows])
        if arr.type == pa.null():
            arr = arr.cast(pa.int64())
        columns[metric_column(name)] = arr
        fields.append(pa.field(metric_column(name), arr.type))
    return pa.Table.from_arrays(list(columns.values()), schema=pa.schema(fields))


def write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CellWriter:
    """Writes one run's cell rows as parts, then compacts them."""

    def __init__(self, root: Path, experiment: str, run_id: str, date: str):
        self.dir = Path(root) / f"experiment={experiment}" / f"date={date}"
        self.run_id = run_id
        self.parts: list = []
        self.tables: list = []       # what the parts hold, so compaction reads nothing back
        self.rows_written = 0

    def part_path(self, part: int) -> Path:
        return self.dir / f"{self.run_id}-{part:05d}.parquet"

    def write(self, rows: list) -> None:
        if rows:
            self.write_table(cells_table(rows))

    def write_table(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        path = self.part_path(len(self.parts) + 1)
        write_atomic(table, path)
        self.parts.append(path)
        self.tables.append(table)
        self.rows_written += table.num_rows

    def compact(self) -> None:
        """Merge this run's parts into part 00000 (one file per run and date)."""
        if len(self.parts) < 2:
            return
        merged = pa.concat_tables(self.tables, promote_options="permissive")
        write_atomic(merged, self.part_path(COMPACT_PART))
        for p in self.parts:
            p.unlink()
        self.parts = [self.part_path(COMPACT_PART)]
        self.tables = [merged]


def cell_files(root: Path) -> list:
    return sorted(glob.glob(str(Path(root) / "experiment=*" / "date=*" / "*.parquet")))


def repair(root: Path) -> int:
    """Unlink parts already merged into a compacted part 00000 (a crash mid-compaction).

    Returns the number of files removed.
    """
    removed = 0
    for path in cell_files(root):
        name = os.path.basename(path)
        run_id, _, part = name[: -len(".parquet")].rpartition("-")
        if part.isdigit() and int(part) != COMPACT_PART:
            compacted = Path(path).parent / f"{run_id}-{COMPACT_PART:05d}.parquet"
            if compacted.exists():
                os.unlink(path)
                removed += 1
    return removed


def _experiment_of(path: str) -> str:
    return Path(path).parent.parent.name.partition("=")[2]


def ok_cell_keys(root: Path, wanted: set | None = None, experiment: str | None = None) -> set:
    """cell_keys that have a row with status ok, in any date and in any experiment (or in
    `experiment` only)."""
    files = [p for p in cell_files(root) if experiment is None or _experiment_of(p) == experiment]
    if not files:
        return set()
    keys = set()
    for path in files:
        t = pq.read_table(path, columns=["cell_key", "status"])
        ok = t.filter(pc.equal(t["status"], "ok"))["cell_key"].to_pylist()
        keys.update(ok)
    return keys if wanted is None else keys & wanted


def reused_rows(root: Path, experiment: str, keys: set, run_id: str) -> pa.Table:
    """The newest ok row of each cell_key in `keys` from other experiments, as rows of
    run `run_id` (reused_from = the run that computed it): a cell another experiment
    already ran is not recomputed, yet every experiment's partition holds a row for each
    of its planned cells."""
    tables = []
    for path in cell_files(root):
        if _experiment_of(path) == experiment:
            continue
        t = pq.read_table(path)
        t = t.filter(pc.and_(pc.equal(t["status"], "ok"), pc.is_in(t["cell_key"], pa.array(sorted(keys)))))
        if t.num_rows:
            tables.append(t)
    if not tables:
        return pa.table({})
    t = pa.concat_tables(tables, promote_options="permissive")
    t = t.sort_by([("cell_key", "ascending"), ("started_at", "descending")])
    keys_col = t["cell_key"].to_pylist()
    first = [i for i, k in enumerate(keys_col) if i == 0 or keys_col[i - 1] != k]
    t = t.take(first)
    origin = t["run_id"]
    t = t.set_column(t.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * t.num_rows, pa.string()))
    i = t.schema.get_field_index("reused_from")
    if i >= 0:
        t = t.set_column(i, "reused_from", origin)
    else:
        t = t.append_column("reused_from", origin)
    return t


def write_run(root: Path, date: str, record: dict) -> None:
    table = pa.Table.from_pylist([record], schema=pa.schema([pa.field(n, t) for n, t in RUN_COLUMNS]))
    write_atomic(table, Path(root) / "runs" / f"date={date}" / f"{record['run_id']}.parquet")


def compact_parts(date_dir: Path, run_id: str):
    """Merge the parts a dead run left in one date directory into part 00000.

    Returns the run's rows there as one table, or None when it left none.
    """
    parts = sorted(date_dir.glob(f"{run_id}-*.parquet"))
    if not parts:
        return None
    tables = [pq.read_table(p) for p in parts]
    merged = pa.concat_tables(tables, promote_options="permissive")
    if len(parts) > 1:
        target = date_dir / f"{run_id}-{COMPACT_PART:05d}.parquet"
        write_atomic(merged, target)
        for p in parts:
            if p != target:
                p.unlink()
    return merged


def mark_dead_runs(root: Path, host: str) -> int:
    """Rewrite ``running`` rows of this host whose driver pid is gone as ``killed``,
    with cells_ok/cells_failed recounted from the rows the run flushed, and compact
    the parts it left.

    A driver killed with -9 cannot finish its runs row; the next run on the same host
    does it. Returns the number of rows rewritten.
    """
    n = 0
    for path in sorted((Path(root) / "runs").glob("date=*/*.parquet")):
        rec = pq.read_table(path).to_pylist()[0]
        if rec["status"] != "running" or rec["host"] != host or rec["pid"] is None:
            continue
        try:
            os.kill(rec["pid"], 0)
            continue                     # still running (or the pid was reused: leave it)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        rec["status"] = "killed"
        statuses = []
        for date_dir in (Path(root) / f"experiment={rec['experiment']}").glob("date=*"):
            table = compact_parts(date_dir, rec["run_id"])
            if table is not None:
                statuses += table["status"].to_pylist()
        rec["cells_ok"] = statuses.count("ok")
        rec["cells_failed"] = len(statuses) - rec["cells_ok"]
        write_atomic(pa.Table.from_pylist([rec], schema=pa.schema([pa.field(n_, t) for n_, t in RUN_COLUMNS])),
                     path)
        n += 1
    return n


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def to_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
