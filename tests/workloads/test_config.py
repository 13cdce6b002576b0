from dataclasses import fields

import pytest

from workloads import build, parse_workload_config
from workloads.config import WorkloadConfig


def test_defaults_and_sizes_parsed():
    cfg = parse_workload_config({"working_set": "2M", "stride": 64})
    assert (cfg.kind, cfg.pattern, cfg.working_set, cfg.stride) == ("synthetic", "uniform", 2 << 20, 64)
    assert cfg.small_file_median == 2048 and cfg.large_file_size == 8 << 20


def test_omegaconf_accepted():
    from omegaconf import OmegaConf

    cfg = parse_workload_config(OmegaConf.create({"pattern": "zipf", "working_set": "${oc.decode:'4M'}"}))
    assert (cfg.pattern, cfg.working_set) == ("zipf", 4 << 20)


def test_max_files_zero_means_no_cap():
    assert parse_workload_config({"max_files": 0}).max_files is None
    assert parse_workload_config({"max_files": 5}).max_files == 5


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"kind": "tarball"}, "workload.kind: 'tarball' is not one of"),
        ({"pattern": "random"}, "workload.pattern: 'random' is not one of"),
        ({"working_set": "6000"}, "workload.working_set: must be a positive multiple of 4K"),
        ({"working_set": "lots"}, "workload.working_set: expected a size"),
        ({"stride": 12}, "workload.stride: must be a positive multiple of 8"),
        ({"write_ratio": 1.5}, "workload.write_ratio: must be in [0, 1]"),
        ({"accesses": -1}, "workload.accesses: must be >= 0"),
        ({"accesses": 1.5}, "workload.accesses: expected an integer"),
        ({"processes": 0}, "workload.processes: must be >= 1"),
        ({"zipf_alpha": -1}, "workload.zipf_alpha: expected a number >= 0"),
        ({"large_folio_fs": "yes"}, "workload.large_folio_fs: expected true or false"),
        ({"kind": "trace"}, "workload.path: kind=trace needs a path"),
        ({"workingset": "4M"}, "workload: unknown field(s) ['workingset']"),
    ],
)
def test_invalid_config_names_the_field(cfg, message):
    with pytest.raises(ValueError) as exc:
        parse_workload_config(cfg)
    assert message in str(exc.value)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed: expected a non-negative integer"):
        build({}, seed=-1)


def test_describe_is_the_relevant_fields():
    w = build({"name": "z", "pattern": "zipf", "working_set": "64M", "accesses": 10}, seed=4)
    assert w.name == "z"
    assert w.describe() == {
        "name": "z", "kind": "synthetic", "pattern": "zipf", "working_set": "64M", "accesses": 10,
        "write_ratio": 0.3, "stride": "4K", "zipf_alpha": 1.0, "seed": 4,
    }


def test_every_conf_workload_builds():
    import pathlib

    import yaml

    conf = pathlib.Path(__file__).resolve().parents[2] / "conf" / "workload"
    names = sorted(p.stem for p in conf.glob("*.yaml"))
    assert names == [
        "abi_probe", "elf_tree", "eof_files", "file_tree", "hash_join", "mixed", "pointer_chase", "random",
        "read_then_map", "sequential", "small_files", "snapshot", "strided", "trace", "zipf",
    ]
    for p in conf.glob("*.yaml"):
        cfg = yaml.safe_load(p.read_text())
        if cfg["kind"] in ("trace", "snapshot"):
            cfg["path"] = str(conf.parents[1] / cfg["path"])
        assert build(cfg, seed=0).name == p.stem


def test_defaults_equal_the_sweep_schema():
    from dataclasses import asdict, fields

    from sweep.schema import WorkloadConf
    from workloads.config import WorkloadConfig

    assert [f.name for f in fields(WorkloadConf)] == [f.name for f in fields(WorkloadConfig)]
    assert parse_workload_config(asdict(WorkloadConf())) == parse_workload_config({})


def test_defaults_equal_the_schema_workload_group():
    """WorkloadConfig() is sweep/schema.py's WorkloadConf, field for field, parsed: a
    partial dict means what the same partial config group means."""
    from omegaconf import OmegaConf

    from sweep.schema import WorkloadConf

    schema = OmegaConf.to_container(OmegaConf.structured(WorkloadConf), enum_to_str=True)
    assert list(schema) == [f.name for f in fields(WorkloadConfig)]
    assert parse_workload_config(schema) == WorkloadConfig()
