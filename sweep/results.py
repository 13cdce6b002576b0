"""Cell rows and run rows as Parquet under results.dir (the store rules: sweep/store.py).

``CellWriter`` flushes a run's rows as parts and compacts them; ``CellIndex`` answers
"which cells have an ok row" incrementally (a sweep asks before every cell it claims);
``reused_rows`` copies another experiment's rows; ``mark_dead_runs`` closes the runs
rows of drivers that were killed.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import typing
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kernel_model.units import parse_size
from sweep import store
from sweep.schema import NON_SEMANTIC_KEYS, SIZE_KEYS, page_sizes, schema_fields
from sweep.store import CELLS, COMPACT_PART, MERGED_KEY, RUNS, listing, read_each, split_part, write_atomic

# Provenance and bookkeeping columns of every cell row, in order.
PROVENANCE = [
    ("run_id", pa.string()), ("cell_key", pa.string()), ("config_key", pa.string()),
    ("cell", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("attempts", pa.int64()), ("duration_s", pa.float64()), ("git_sha", pa.string()),
    ("model_version", pa.string()), ("package_versions", pa.string()), ("host", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")), ("config_json", pa.string()),
    ("reused_from", pa.string()),  # run_id whose row this copies (a cell done by another experiment)
    ("inputs_digest", pa.string()),  # sha256 of the input files' manifest (sweep.inputs), or null
]

RUN_COLUMNS = [
    ("run_id", pa.string()), ("experiment", pa.string()), ("overrides", pa.string()),
    ("executor", pa.string()), ("cells_planned", pa.int64()), ("cells_done_before", pa.int64()),
    ("cells_to_run", pa.int64()), ("cells_reused", pa.int64()), ("cells_ok", pa.int64()),
    ("cells_failed", pa.int64()), ("cells_by_others", pa.int64()),
    ("cells_skipped", pa.int64()), ("cells_excluded", pa.int64()), ("status", pa.string()),
    ("exit_status", pa.int64()), ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")), ("git_sha", pa.string()),
    ("model_version", pa.string()), ("host", pa.string()), ("pid", pa.int64()),
    ("error", pa.string()),   # why a run with status 'failed' stopped (e.g. an OSError writing results)
]


# Config keys stored as bytes: the sizes, the process page size (resolved) and the
# kernel an ablation cell compares with.
BYTE_KEYS = (*SIZE_KEYS, "process.page_size", "ablation.against")


def _arrow_type(key: str, tp) -> pa.DataType:
    if key in BYTE_KEYS:
        return pa.int64()                       # bytes
    origin = typing.get_origin(tp)
    if origin is typing.Union:                  # Optional[X]
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
        origin = typing.get_origin(tp)
    if origin in (list, typing.List):
        return pa.string()                      # "16K,32K,64K"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return pa.string()                      # an enumeration: its value's name
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
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            pass  # a node the cell's config leaves out (ablation off): null
        elif key == "kernel.page_size":
            node = kps
        elif key == "process.page_size":
            node = pps
        elif key in BYTE_KEYS:
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
    the type pyarrow infers over the rows (int64, double, bool or string). A metric no
    row has a value for is left out: readers union files by name, so an absent column
    reads as null and cannot clash with the type another file gives it.
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
            continue
        columns[metric_column(name)] = arr
        fields.append(pa.field(metric_column(name), arr.type))
    return pa.Table.from_arrays(list(columns.values()), schema=pa.schema(fields))


def _merged_meta(parts) -> dict:
    return {MERGED_KEY: json.dumps(sorted(parts)).encode()}


class CellWriter:
    """Writes one run's cell rows as parts, then compacts them."""

    def __init__(self, root: Path, experiment: str, run_id: str, date: str):
        self.dir = Path(root) / CELLS / f"experiment={experiment}" / f"date={date}"
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
        """Merge this run's parts into part 00000 (one file per run and date): written
        whole, naming the parts it holds, then the parts are unlinked. A reader that
        lists in between skips the parts (store.listing); one that still opens a part
        by name reads a hard link of its own (store.Snapshot) or lists again."""
        if len(self.parts) < 2:
            return
        merged = pa.concat_tables(self.tables, promote_options="permissive")
        numbers = [split_part(p)[1] for p in self.parts]
        write_atomic(merged, self.part_path(COMPACT_PART), _merged_meta(numbers))
        for p in self.parts:
            p.unlink(missing_ok=True)      # a sweep's repair() may have been first
        self.parts = [self.part_path(COMPACT_PART)]
        self.tables = [merged]


def cell_files(root: Path) -> list:
    """The cell files a reader should read (store.listing), as strings."""
    return [str(p) for p in listing(Path(root), CELLS)]


def repair(root: Path) -> int:
    """Unlink parts that a part 00000 beside them already holds (a run that died between
    renaming its merged file into place and unlinking its parts). Readers skip such parts
    anyway; this only reclaims the space. Returns the number of files removed."""
    root = Path(root)
    store.migrate(root)
    removed = 0
    kept = set(listing(root, CELLS))
    for path in root.glob(f"{CELLS}/experiment=*/date=*/*.parquet"):
        run_id, part = split_part(path)
        if path not in kept and part not in (None, COMPACT_PART):
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def _experiment_of(path) -> str:
    return Path(path).parent.parent.name.partition("=")[2]


class CellIndex:
    """Which cell_keys have an ok row, per experiment; refresh() reads only files it has
    not read before (named files never change)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.files: dict = {}        # path -> (experiment, frozenset of ok keys, all keys)

    def refresh(self) -> "CellIndex":
        def keys(path):
            if path in self.files:
                return path, self.files[path]
            t = pq.read_table(path, columns=["cell_key", "status"])
            ok = t.filter(pc.equal(t["status"], "ok"))["cell_key"].to_pylist()
            return path, (_experiment_of(path), frozenset(ok))

        self.files = dict(read_each(self.root, CELLS, keys))
        return self

    def ok(self, key: str, experiment: str | None = None) -> bool:
        return any(key in ok for exp, ok in self.files.values() if experiment is None or exp == experiment)

    def ok_keys(self, wanted: set | None = None, experiment: str | None = None) -> set:
        out = set()
        for exp, ok in self.files.values():
            if experiment is None or exp == experiment:
                out |= ok if wanted is None else ok & wanted
        return out

    def holders(self, keys: set, experiment: str) -> list:
        """Files outside ``experiment`` with an ok row of one of ``keys``."""
        return [p for p, (exp, ok) in self.files.items() if exp != experiment and ok & keys]


def ok_cell_keys(root: Path, wanted: set | None = None, experiment: str | None = None) -> set:
    """cell_keys that have a row with status ok, in any date and in any experiment (or in
    `experiment` only)."""
    return CellIndex(root).refresh().ok_keys(wanted, experiment)


def reused_rows(root: Path, experiment: str, keys: set, run_id: str, index: CellIndex | None = None) -> pa.Table:
    """The newest ok row of each cell_key in `keys` from other experiments, as rows of
    run `run_id` (reused_from = the run that computed it): a cell another experiment
    already ran is not recomputed, yet every experiment's partition holds a row for each
    of its planned cells."""
    index = index or CellIndex(root).refresh()
    wanted = pa.array(sorted(keys))

    def rows(path):
        t = pq.read_table(path)
        return t.filter(pc.and_(pc.equal(t["status"], "ok"), pc.is_in(t["cell_key"], wanted)))

    holders = set(index.holders(set(keys), experiment))
    tables = [t for t in read_each(root, CELLS, rows, files=lambda paths: [p for p in paths if p in holders])
              if t.num_rows]
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


RUN_SCHEMA = pa.schema([pa.field(n, t) for n, t in RUN_COLUMNS])


def write_run(root: Path, date: str, record: dict) -> None:
    table = pa.Table.from_pylist([record], schema=RUN_SCHEMA)
    write_atomic(table, Path(root) / RUNS / f"date={date}" / f"{record['run_id']}.parquet")


def compact_parts(date_dir: Path, run_id: str):
    """Merge the parts a dead run left in one date directory into part 00000.

    Returns the run's rows there as one table, or None when it left none. Another
    process doing the same at once is harmless: both merge the same parts.
    """
    root = date_dir.parent.parent.parent
    for _ in range(store.MAX_RETRIES):
        mine = [p for p in listing(root, CELLS) if p.parent == date_dir and split_part(p)[0] == run_id]
        if not mine:
            return None
        try:
            tables = [pq.read_table(p) for p in mine]
        except FileNotFoundError:
            continue                     # compacted meanwhile: list again
        merged = pa.concat_tables(tables, promote_options="permissive")
        if len(mine) > 1:
            held = set()
            for p in mine:
                part = split_part(p)[1]
                meta = (pq.read_schema(p).metadata or {}) if part == COMPACT_PART else {}
                held |= set(json.loads(meta.get(MERGED_KEY, b"[]"))) | {part}
            write_atomic(merged, date_dir / f"{run_id}-{COMPACT_PART:05d}.parquet", _merged_meta(held - {0}))
            for p in mine:
                if split_part(p)[1] != COMPACT_PART:
                    p.unlink(missing_ok=True)
        return merged
    return None


def mark_dead_runs(root: Path, host: str) -> int:
    """Rewrite ``running`` rows of this host whose driver is gone as ``killed``, with
    cells_ok/cells_failed recounted from the rows the run flushed, and compact the
    parts it left.

    A driver killed with -9 cannot finish its runs row; the next run on the same host
    does it. Returns the number of rows rewritten.
    """
    from sweep.claims import pid_alive

    root = Path(root)
    n = 0
    for rec in read_each(root, RUNS, lambda p: (p, pq.read_table(p).to_pylist()[0])):
        path, rec = rec
        if rec["status"] != "running" or rec["host"] != host or rec["pid"] is None:
            continue
        if pid_alive(rec["pid"], None):
            continue                     # still running (or the pid was reused: leave it)
        rec["status"] = "killed"
        statuses = []
        for date_dir in (root / CELLS / f"experiment={rec['experiment']}").glob("date=*"):
            table = compact_parts(date_dir, rec["run_id"])
            if table is not None:
                statuses += table["status"].to_pylist()
        rec["cells_ok"] = statuses.count("ok")
        rec["cells_failed"] = len(statuses) - rec["cells_ok"]
        write_atomic(pa.Table.from_pylist([rec], schema=RUN_SCHEMA), path)
        n += 1
    return n


def cells_dataset(root: Path):
    """A pyarrow dataset of every cell row, hive columns ``experiment`` and ``date``
    included, over the union of the files' schemas (a metric one file lacks reads as
    null; differing numeric types widen)."""
    import pyarrow.dataset as ds

    files = [str(p) for p in listing(Path(root), CELLS)]
    schemas = [pq.read_schema(f) for f in files]
    partitioning = ds.partitioning(pa.schema([("experiment", pa.string()), ("date", pa.string())]),
                                   flavor="hive")
    schema = pa.unify_schemas([s.remove_metadata() for s in schemas] + [partitioning.schema],
                              promote_options="permissive") if files else partitioning.schema
    return ds.dataset(files, schema=schema, format="parquet", partitioning=partitioning,
                      partition_base_dir=str(Path(root) / CELLS))

def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def to_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
