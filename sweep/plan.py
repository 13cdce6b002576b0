"""Expand a config's ``sweep:`` node into cells, resolve and validate every one.

The grid is a cartesian product of axes: one axis per ``sweep.grid`` key, one per
``sweep.zip`` entry (its keys advance together). Values use Hydra's override grammar
(``4k,16k,64k``, ``range(0,4)``, ``glob(*)``), so an axis over a config group
(``kernel``, ``workload``) is a choice of that group's configs. ``sweep.exclude`` rules
drop cells; a cell whose process page size is below its kernel page size is skipped
and reported. No ``sweep:`` axes means one cell.

A command-line override of a key that is also a grid axis pins that key: the axis is
dropped, as Hydra's basic sweeper lets a command-line sweep replace a configured one.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweep.schema import (
    NON_SEMANTIC_KEYS,
    ConfigError,
    check_page_size_order,
    describe_compose_error,
    enum_error,
    page_sizes,
    resolve_workload_path,
    validate_values,
)


@dataclass(frozen=True)
class Cell:
    """One point of the grid, resolved.

    ``config`` is the plain dict handed to the cell function: the resolved config less
    NON_SEMANTIC_KEYS. ``cell_key`` hashes it with the model version and the digest of
    the files the workload reads (sweep/inputs.py); ``config_key`` hashes the config
    alone (the same cell across model versions, for nightly comparisons).
    """

    index: int
    assignment: tuple            # ((key, value string), ...) in axis order
    config: dict
    cell_key: str
    config_key: str
    inputs_digest: str | None = None   # None: the workload reads no file

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.assignment) or "(single cell)"


@dataclass
class Plan:
    experiment: str
    cells: list = field(default_factory=list)        # valid cells, grid order
    skipped: list = field(default_factory=list)      # (label, reason): process < kernel
    excluded: int = 0                                # dropped by sweep.exclude
    done: set = field(default_factory=set)           # cell_keys with an ok row already
    reuse: set = field(default_factory=set)          # ... found only in other experiments

    @property
    def to_run(self) -> list:
        return [c for c in self.cells if c.cell_key not in self.done]

    def summary(self) -> str:
        n_done = sum(c.cell_key in self.done for c in self.cells)
        reused = f" ({len(self.reuse)} in other experiments: their rows are copied)" if self.reuse else ""
        lines = [f"plan {self.experiment}: {len(self.cells)} cells total, {n_done} already done{reused}, "
                 f"{len(self.cells) - n_done} to run"
                 + (f", {len(self.skipped)} skipped" if self.skipped else "")
                 + (f", {self.excluded} excluded" if self.excluded else "")]
        for label, reason in self.skipped:
            lines.append(f"  skipped {label}: {reason}")
        return "\n".join(lines)


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def semantic_config(resolved: dict) -> dict:
    """What a cell computes from: the config without NON_SEMANTIC_KEYS, and without the
    ablation node while it is off (so a cell keeps the key it had before that node existed)."""
    out = {k: v for k, v in resolved.items() if k not in NON_SEMANTIC_KEYS}
    if (out.get("ablation") or {}).get("against") is None:
        out.pop("ablation", None)
    return out


def config_key(config: dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def cell_key(config: dict, model_version: str, inputs_digest: str | None = None) -> str:
    """sha256 of the config, the model version and (only when the workload reads files)
    their digest: a cell without input files keeps the key it had before inputs counted."""
    payload = {"config": config, "model_version": model_version}
    if inputs_digest is not None:
        payload["inputs"] = inputs_digest
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


# ---- axes ------------------------------------------------------------------------

@dataclass(frozen=True)
class Axis:
    keys: tuple                  # one key, or the keys of a zip group
    points: tuple                # tuple of tuples: one value string per key


def _override_key(ov) -> str:
    return ov.key_or_group if ov.package is None else f"{ov.key_or_group}@{ov.package}"


def _parse_values(parser: OverridesParser, key: str, text: str, where: str) -> list:
    """The value strings of one grammar expression, ready to re-use in an override."""
    try:
        ov = parser.parse_overrides([f"{key}={text}"])[0]   # sets the loader glob() needs
    except Exception as e:  # hydra's OverrideParseException and grammar errors
        raise ConfigError(where, f"cannot parse {text!r}: {e}") from None
    if ov.is_sweep_override():
        if not ov.is_discrete_sweep():
            raise ConfigError(where, f"{text!r} is an interval; use a list, range() or glob()")
        try:
            return list(ov.sweep_string_iterator())
        except Exception as e:
            raise ConfigError(where, f"cannot expand {text!r}: {e}") from None
    return [ov.get_value_element_as_str()]


def grid_axes(sweep_cfg: dict, parser: OverridesParser, pinned: dict) -> list:
    """The axes of sweep.grid and sweep.zip, less keys pinned on the command line.

    ``pinned`` maps a key set on the command line to its value string. A pinned grid
    key loses its axis. A zip group keeps the points whose pinned keys match (kernel=4k
    selects the 4k entry and whatever is zipped with it); when none match, the pinned
    keys leave the group and the rest of it still sweeps.
    """
    axes, seen = [], set()

    def claim(key, where):
        if key in seen:
            raise ConfigError(where, f"{key} appears in more than one sweep axis")
        seen.add(key)

    for key, text in (sweep_cfg.get("grid") or {}).items():
        claim(key, f"sweep.grid.{key}")
        if key in pinned:
            continue
        values = _parse_values(parser, key, str(text), f"sweep.grid.{key}")
        axes.append(Axis((key,), tuple((v,) for v in values)))
    for i, group in enumerate(sweep_cfg.get("zip") or []):
        keys, columns = [], []
        for key, text in group.items():
            claim(key, f"sweep.zip[{i}].{key}")
            keys.append(key)
            columns.append(_parse_values(parser, key, str(text), f"sweep.zip[{i}].{key}"))
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            desc = ", ".join(f"{k}: {len(c)}" for k, c in zip(keys, columns))
            raise ConfigError(f"sweep.zip[{i}]", f"zipped keys need equally many values; got {desc}")
        points = list(zip(*columns))
        pin = [j for j, k in enumerate(keys) if k in pinned]
        if pin:
            matching = [p for p in points if all(p[j] == pinned[keys[j]] for j in pin)]
            points = matching or points
            keep = [j for j in range(len(keys)) if j not in pin]
            keys = [keys[j] for j in keep]
            points = [tuple(p[j] for j in keep) for p in points]
        if keys and points:
            axes.append(Axis(tuple(keys), tuple(dict.fromkeys(points))))
    return axes


def exclude_rules(sweep_cfg: dict, parser: OverridesParser) -> list:
    """Each rule: {key: set of value strings}; a cell matching every key is dropped."""
    rules = []
    for i, rule in enumerate(sweep_cfg.get("exclude") or []):
        rules.append({key: set(_parse_values(parser, key, str(text), f"sweep.exclude[{i}].{key}"))
                      for key, text in rule.items()})
    return rules


def _excluded(assignment: dict, resolved: dict, rules: list) -> bool:
    for rule in rules:
        if all(_matches(key, allowed, assignment, resolved) for key, allowed in rule.items()):
            return True
    return False


def _matches(key, allowed, assignment, resolved) -> bool:
    if key in assignment:
        return assignment[key] in allowed
    value = resolved
    for part in key.lstrip("+~").split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return value is not None and str(value) in allowed


# ---- expansion -------------------------------------------------------------------

# The folder holding conf/: shipped configs name data files relative to it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

ComposeFn = Callable[[Sequence[str]], DictConfig]


def expand(base_cfg: DictConfig, base_overrides: Sequence[str], compose: ComposeFn, *,
           experiment: str, model_version: str, is_group: Callable[[str], bool],
           config_loader=None, choices: dict | None = None, inputs=None) -> Plan:
    """Expand, resolve and validate every cell; raise ConfigError on the first bad one.

    ``compose(overrides)`` composes the primary config with the given overrides (Hydra's
    compose API). It is called once per distinct combination of config-group choices;
    plain value overrides are applied with OmegaConf.update, which enforces the schema
    types just as composition does. ``choices`` are the base config's group choices
    (hydra.runtime.choices), so exclude rules can name a group that is not an axis.
    ``inputs`` (sweep.inputs.InputDigests) digests the files a workload reads; by
    default an in-memory one.
    """
    from sweep.inputs import InputDigests

    inputs = inputs if inputs is not None else InputDigests()
    parser = OverridesParser.create(config_loader=config_loader)
    sweep_cfg = OmegaConf.to_container(base_cfg.sweep, resolve=True)
    pinned = {_override_key(ov).lstrip("+~"): ov.get_value_element_as_str()
              for ov in parser.parse_overrides(list(base_overrides))}
    axes = grid_axes(sweep_cfg, parser, pinned)
    rules = exclude_rules(sweep_cfg, parser)
    single = not axes

    context = {**{k: str(v) for k, v in (choices or {}).items() if v is not None}, **pinned}
    plan = Plan(experiment=experiment)
    composed: dict = {(): base_cfg}
    for point in itertools.product(*[a.points for a in axes]):
        pairs = tuple((k, v) for axis, vals in zip(axes, point) for k, v in zip(axis.keys, vals))
        # Choosing a group's current option changes nothing: no composition for it.
        group_ovs = tuple(f"{k}={v}" for k, v in pairs if is_group(k) and context.get(k) != v)
        value_ovs = [(k, v) for k, v in pairs if not is_group(k)]
        if group_ovs not in composed:
            try:
                composed[group_ovs] = compose(list(base_overrides) + list(group_ovs))
            except Exception as e:  # hydra composition errors carry their own message
                raise ConfigError(" ".join(group_ovs) or "config", describe_compose_error(e)) from None
        resolved = _resolve_with(composed[group_ovs], parser, value_ovs)
        label = " ".join(f"{k}={v}" for k, v in pairs) or "(single cell)"
        validate_values(resolved)
        resolve_workload_path(resolved, (os.getcwd(), PROJECT_ROOT))
        if _excluded({**context, **dict(pairs)}, resolved, rules):
            plan.excluded += 1
            continue
        if single:
            check_page_size_order(resolved)
        else:
            kps, pps = page_sizes(resolved)
            if pps < kps:
                plan.skipped.append((label, f"process.page_size {pps // 1024}K < kernel.page_size "
                                            f"{kps // 1024}K"))
                continue
        config = semantic_config(resolved)
        digest = inputs.workload(config["workload"])
        plan.cells.append(Cell(index=len(plan.cells), assignment=pairs, config=config,
                               cell_key=cell_key(config, model_version, digest),
                               config_key=config_key(config), inputs_digest=digest))
    return plan


def _resolve_with(cfg: DictConfig, parser: OverridesParser, value_ovs: list) -> dict:
    """The resolved plain dict of ``cfg`` with the value overrides applied.

    Overrides of existing keys are applied in place and undone afterwards (a deep copy
    of a composed config costs far more than the cell's own work); an addition (+key)
    works on a copy.
    """
    parsed = []
    for key, text in value_ovs:
        ov = parser.parse_override(f"{key}={text}")
        if ov.is_delete():
            raise ConfigError(key, "deleting a key is not supported in a sweep axis")
        parsed.append((key, text, ov))
    if any(ov.is_add() or ov.is_force_add() for _, _, ov in parsed):
        cfg = copy.deepcopy(cfg)
    undo = []
    try:
        for key, text, ov in parsed:
            path = ov.key_or_group
            try:
                if ov.is_add() or ov.is_force_add():
                    with _open_struct(cfg):
                        OmegaConf.update(cfg, path, ov.value(), merge=True, force_add=True)
                    continue
                old = OmegaConf.select(cfg, path, default=_MISSING)
                if old is _MISSING:
                    raise ConfigError(key, "not in the config; check the spelling (or prefix + to add it)")
                if isinstance(old, (DictConfig, ListConfig)):
                    old = OmegaConf.to_container(old, enum_to_str=True)
                undo.append((path, old))
                OmegaConf.update(cfg, path, ov.value(), merge=False)
            except OmegaConfBaseException as e:
                if enum_error(e):
                    raise ConfigError(key, enum_error(e).partition(": ")[2]) from None
                raise ConfigError(key, f"{text!r}: {_first_line(e)}") from None
        # Enum members become their names: cell configs (and so cell keys) hold plain strings.
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True, enum_to_str=True)
    finally:
        for path, old in reversed(undo):
            OmegaConf.update(cfg, path, old, merge=False)


_MISSING = object()


class _open_struct:
    def __init__(self, cfg):
        self.cfg = cfg

    def __enter__(self):
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc):
        OmegaConf.set_struct(self.cfg, True)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
