"""The schema rejects what cannot run, naming the key and the allowed values."""

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from sweep.app import CONF_DIR
from sweep.schema import Config, ConfigError, check_page_size_order, page_sizes, validate_values


def default_config(**changes):
    cfg = OmegaConf.to_container(OmegaConf.structured(Config))
    for dotted, value in changes.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def error_of(cfg, check=validate_values):
    with pytest.raises(ConfigError) as e:
        check(cfg)
    return str(e.value)


def test_defaults_are_valid():
    cfg = default_config()
    validate_values(cfg)
    check_page_size_order(cfg)
    assert (cfg["kernel"]["page_size"], cfg["process"]["page_size"], cfg["folio"]["anon"]) == \
        ("4K", "kernel", "base")


def test_bytes_are_a_page_size():
    """A page size may be written in bytes: it validates and resolves to the same sizes
    as "64K" / "16K", and "kernel" follows the kernel's."""
    cfg = default_config(kernel__page_size="65536", process__page_size="kernel")
    validate_values(cfg)
    check_page_size_order(cfg)
    assert page_sizes(cfg) == (65536, 65536)
    cfg = default_config(kernel__page_size="16384", process__page_size="65536")
    validate_values(cfg)
    check_page_size_order(cfg)
    assert page_sizes(cfg) == (16384, 65536)


@pytest.mark.parametrize("key,value,message", [
    ("kernel__page_size", "8K",
     "kernel.page_size: '8K' is not allowed; allowed values: 4K, 16K, 64K (or their sizes in bytes)"),
    ("process__page_size", "32K",
     "process.page_size: '32K' is not allowed; allowed values: kernel, 4K, 16K, 64K"),
    ("folio__anon", "thp",
     "folio.anon: 'thp' is not allowed; allowed values: base, mthp, mthp_only"),
    ("folio__pagecache", "lru",
     "folio.pagecache: 'lru' is not allowed; allowed values: fixed, always_max, drop_reread, "
     "mmap_convert, bounce"),
    ("arch__native_pgtable", "eager",
     "arch.native_pgtable: 'eager' is not allowed; allowed values: off, mirror, on_demand"),
    ("abi__overhang", "zero",
     "abi.overhang: 'zero' is not allowed; allowed values: anon_fault, sigbus, anon_vma"),
    ("executor", "dask", "executor: 'dask' is not allowed; allowed values: ray, serial, inprocess"),
    ("memory__fragmentation", 1.5, "memory.fragmentation: 1.5 is out of range; allowed 0.0..1.0"),
    ("memory__size", "8Q", "memory.size: '8Q' is not a size; write e.g. 4K, 64M, 8G or bytes"),
    ("kernel__va_bits", 64, "kernel.va_bits: 64 is out of range; allowed 36..52"),
    ("workload__pattern", "random",
     "workload.pattern: 'random' is not allowed; allowed values: sequential, uniform, zipf, strided"),
    ("ray__address", "somewhere",
     "ray.address: 'somewhere' is not allowed; allowed values: null (local Ray), auto, host:port"),
])
def test_bad_value_names_key_and_allowed(key, value, message):
    assert error_of(default_config(**{key: value})) == message


def test_tlb_geometry_and_mthp_sizes():
    cfg = default_config()
    cfg["tlb"]["l2"] = {"entries": 1280, "ways": 3, "latency": 5}
    assert error_of(cfg) == ("tlb.l2: entries (1280) must be a multiple of ways (3); use ways == entries "
                             "for a fully associative structure")
    cfg["tlb"]["l2"]["ways"] = 5
    cfg["tlb"]["walk_cache"]["entries"] = 0  # no walk cache: allowed
    validate_values(cfg)
    cfg["tlb"]["l1"]["entries"] = 0
    assert error_of(cfg) == "tlb.l1.entries: must be >= 1, got 0"
    assert error_of(default_config(folio__mthp_sizes=["16K", "48K"])) == \
        "folio.mthp_sizes[1]: '48K' is not a power-of-two size such as 16K, 64K"


def test_process_page_size_below_kernel_is_an_error_in_a_single_run():
    cfg = default_config(kernel__page_size="64K", process__page_size="16K")
    validate_values(cfg)
    assert error_of(cfg, check_page_size_order) == (
        "process.page_size: 16K is smaller than kernel.page_size 64K; it must be >= the kernel's")


def test_cli_bad_page_size_one_line_exit_2_nothing_written(tmp_path):
    res = subprocess.run([sys.executable, "-m", "sweep", "kernel.page_size=8K",
                          f"results.dir={tmp_path / 'r'}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        "error: kernel.page_size: '8K' is not allowed; allowed values: 4K, 16K, 64K "
        "(or their sizes in bytes)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_composition_rejects_misspelt_key_and_wrong_type(sweep_run, results, capsys):
    assert sweep_run("kernel.pagesize=4K") == (2, "")
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: kernel.pagesize: not in the config; check the spelling (or prefix + to add a new key)"]
    assert sweep_run("workload.accesses=many") == (2, "")
    assert capsys.readouterr().err.splitlines() == [
        "error: workload.accesses: Value 'many' of type 'str' could not be converted to Integer"]
    assert sweep_run("kernel=8k") == (2, "")
    assert capsys.readouterr().err.splitlines() == [
        "error: kernel: no config named '8k'; allowed values: 16k, 4k, 64k"]
    assert not results.exists()


def test_every_group_file_composes_and_validates():
    """Each YAML of every group merges into the schema and passes validation.

    Groups are composed side by side (the i-th option of each group in one compose),
    so the check costs as many compositions as the largest group has files.
    conf/tlb and conf/workload are written by their modules' owners against this
    schema: a new key there needs a schema field first.
    """
    from hydra import compose, initialize_config_dir

    from sweep.schema import register_configs

    register_configs(CONF_DIR)
    groups = ["kernel", "process", "folio", "arch", "memory", "abi", "tlb", "workload"]
    options = {g: sorted(f.stem for f in (CONF_DIR / g).glob("*.yaml")) for g in groups}
    assert {g: options[g] for g in groups[:6]} == {
        "kernel": ["16k", "4k", "64k"],
        "process": ["16k", "4k", "64k", "kernel"],
        "folio": ["base", "mthp", "mthp_only"],
        "arch": ["default", "native_mirror", "native_on_demand", "no_contpte"],
        "memory": ["default", "fragmented", "fragmented_64k"],
        "abi": ["anon_fault", "anon_vma", "sigbus"],
    }
    seen = {g: [] for g in groups}
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        for i in range(max(len(o) for o in options.values())):
            choice = {g: options[g][i % len(options[g])] for g in groups}
            cfg = OmegaConf.to_container(compose("config", overrides=[f"{g}={c}" for g, c in choice.items()]),
                                         resolve=True)
            validate_values(cfg)
            for g, c in choice.items():
                if c not in seen[g]:
                    seen[g].append(c)
    assert seen == options
