"""An experiment's report metadata: the ``report:`` node of conf/experiment/NAME.yaml.

    report:
      question: How much of the 64K kernel's advantage does 4K+mTHP recover?
      keys: [kernel_page_size, process_page_size, folio_anon]   # result columns
      metric: walk_mem_refs          # the metric the answer is given in
      also: [l2_tlb_misses]          # further metrics the answer quotes
      better: lower                  # optional; must agree with the metric registry

The experiment file is the one source of its question, key columns and metric; the
metric registry (kernel_model/metrics.py) the one source of which direction is better:
a report ranks `metric` in the registry's direction, and a `better:` in the file is only
checked against it (sweep.schema.check_report, the same check a sweep's config load runs).
The report code only knows how to turn them into a table, a figure and an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sweep.report.load import ReportError
from sweep.schema import ConfigError, check_report

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@dataclass(frozen=True)
class ReportSpec:
    question: str = ""
    keys: tuple = ()
    metric: str | None = None
    also: tuple = ()
    better: str | None = None  # the registry's direction of metric (None without one)
    metrics: tuple = field(default=())  # metric, then also


def load_spec(experiment: str, conf_dir=None) -> ReportSpec:
    """The report node of conf/experiment/<experiment>.yaml; an empty spec when the file
    or its node is missing (the generic table still works)."""
    from omegaconf import OmegaConf

    path = Path(conf_dir or CONF_DIR) / "experiment" / f"{experiment}.yaml"
    if not path.is_file():
        return ReportSpec()
    node = OmegaConf.to_container(OmegaConf.load(path)).get("report") or {}
    unknown = sorted(set(node) - {"question", "keys", "metric", "also", "better"})
    if unknown:
        raise ReportError(f"{path}: report: unknown key(s) {unknown}; allowed: question, keys, metric, also, better")
    try:
        better = check_report(node)
    except ConfigError as e:
        raise ReportError(f"{path}: {e}") from None
    metric = node.get("metric")
    also = tuple(node.get("also") or ())
    return ReportSpec(question=" ".join(str(node.get("question", "")).split()), keys=tuple(node.get("keys") or ()),
                      metric=metric, also=also, better=better, metrics=((metric,) if metric else ()) + also)
