"""System.from_config writes no default of its own: a key absent from the config takes
the default of Policy or System(), and those equal sweep/schema.py's, so a partial dict
(tests, the Python API) means what the same partial config group means."""

import dataclasses
import inspect

from omegaconf import OmegaConf

from kernel_model.system import Policy, System
from kernel_model.units import parse_size
from sweep.schema import Config


def _schema() -> dict:
    return OmegaConf.to_container(OmegaConf.structured(Config), enum_to_str=True)


def test_policy_defaults_equal_the_schema():
    cfg = _schema()
    folio, arch = cfg["folio"], cfg["arch"]
    expected = dict(anon=folio["anon"], mthp_sizes=tuple(parse_size(s) for s in folio["mthp_sizes"]),
                    thp_pmd=folio["thp_pmd"], pagecache=folio["pagecache"],
                    readahead=parse_size(folio["readahead"]), contpte=arch["contpte"],
                    native_pgtable=arch["native_pgtable"], overhang=cfg["abi"]["overhang"])
    default = Policy()
    assert {k: getattr(default, k) for k in expected} == expected
    # every Policy knob is either in the schema or a model-only switch with its own default
    assert {f.name for f in dataclasses.fields(Policy)} - set(expected) == {"zero_page", "huge_zero_page"}


def test_system_defaults_equal_the_schema():
    cfg = _schema()
    params = inspect.signature(System.__init__).parameters
    assert {k: params[k].default for k in ("kernel_page_size", "memory_size", "va_bits", "fragmentation",
                                           "fragmentation_order", "seed")} == {
        "kernel_page_size": cfg["kernel"]["page_size"], "memory_size": cfg["memory"]["size"],
        "va_bits": cfg["kernel"]["va_bits"], "fragmentation": cfg["memory"]["fragmentation"],
        "fragmentation_order": cfg["memory"]["fragmentation_order"], "seed": cfg["seed"]}


def test_from_config_passes_what_is_given_and_only_that():
    s = System.from_config({"kernel": {"page_size": "16K"}, "memory": {"size": "1G", "fragmentation": 0.25},
                            "folio": {"anon": "mthp", "mthp_sizes": ["64K"], "readahead": "0"},
                            "arch": {"native_pgtable": "mirror"}, "abi": {"overhang": "sigbus"}, "seed": 3})
    assert (s.kernel_page_size, s.memory_size, s.va_bits, s.seed) == (16384, 1 << 30, 48, 3)
    assert s.policy == Policy(anon="mthp", mthp_sizes=(65536,), readahead=0, native_pgtable="mirror",
                              overhang="sigbus")
    assert System.from_config({"memory": {"size": "64M"}}).kernel_page_size == 4096
