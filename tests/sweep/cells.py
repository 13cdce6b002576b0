"""Deterministic cell functions for the engine's tests (stand-ins for kernel_model.simulate)."""

import hashlib
import os
import time

from kernel_model.units import parse_page_size


def _digest(cfg) -> int:
    return int(hashlib.sha256(repr(sorted(cfg["kernel"].items())).encode()
                              + repr(cfg["folio"]["anon"]).encode()
                              + repr(cfg["seed"]).encode()).hexdigest()[:8], 16)


def trivial(cfg):
    """Metrics that are a pure function of the config."""
    kps = parse_page_size(cfg["kernel"]["page_size"])
    pps = kps if cfg["process"]["page_size"] == "kernel" else parse_page_size(cfg["process"]["page_size"])
    return {"accesses": cfg["workload"]["accesses"], "pps_over_kps": pps // kps,
            "digest": _digest(cfg), "seed": cfg["seed"]}


def fail_on_64k(cfg):
    """Raises for every 64K-kernel cell, like a model bug in one corner of the grid."""
    if parse_page_size(cfg["kernel"]["page_size"]) == 65536:
        raise ValueError("no 64K model here")
    return trivial(cfg)


def slow(cfg):
    """trivial() after SWEEP_TEST_SLEEP seconds (for kill -9 tests)."""
    time.sleep(float(os.environ.get("SWEEP_TEST_SLEEP", "0.3")))
    return trivial(cfg)


def sample_row(cell_key: str, **metrics) -> dict:
    """A cell row as sweep.app builds it, for writer-level tests."""
    import datetime as dt

    from sweep.results import flatten_config
    from sweep.schema import Config
    from omegaconf import OmegaConf

    config = {k: v for k, v in OmegaConf.to_container(OmegaConf.structured(Config)).items()
              if k not in ("results", "executor", "ray", "sweep")}
    row = dict(run_id="r", cell_key=cell_key, config_key=cell_key, cell="c", status="ok", error=None,
               attempts=1, duration_s=0.5, git_sha=None, model_version="m", package_versions="{}",
               host="h", started_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
               config_json="{}", metrics=metrics or {"faults": 1})
    row.update(flatten_config(config))
    return row


def biased(cfg):
    """trivial() with its digest scaled by SWEEP_TEST_BIAS (a model change, for nightly)."""
    out = trivial(cfg)
    out["l2_tlb_misses"] = int(1000 * float(os.environ.get("SWEEP_TEST_BIAS", "1.0")))
    return out


def die_once(cfg):
    """The worker process dies (os._exit) the first time each cell runs; marker files in
    the directory workload.path (unused by synthetic workloads) remember which died."""
    marker = os.path.join(cfg["workload"]["path"], f"{_digest(cfg)}-{cfg['process']['page_size']}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return trivial(cfg)


def die_on_64k(cfg):
    """The worker dies for every 64K-kernel cell, every time."""
    if parse_page_size(cfg["kernel"]["page_size"]) == 65536:
        os._exit(1)
    return trivial(cfg)


def coloured_error(cfg):
    """Raises with terminal colour codes in its message, as Ray's own errors carry them."""
    raise RuntimeError("\x1b[36mray::run_cell()\x1b[39m failed in \x1b[1;31mred\x1b[0m")
