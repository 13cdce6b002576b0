"""Grid expansion: product, zip, exclude, Hydra grammar, pins, skips, cell keys."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from sweep.app import group_test
from sweep.plan import cell_key, config_key, expand
from sweep.schema import ConfigError, register_configs
from tests.sweep.conftest import write_experiment

K = 1024


def plan_for(conf_dir, *overrides, model_version="m1"):
    register_configs(conf_dir)
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir)):
        loader = GlobalHydra.instance().config_loader()
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        choices = dict(cfg.hydra.runtime.choices)
        with open_dict(cfg):
            del cfg["hydra"]
        return expand(cfg, overrides, lambda ovs: compose("config", overrides=list(ovs)),
                      experiment=choices.get("experiment") or "default", model_version=model_version,
                      is_group=group_test(loader), config_loader=loader, choices=choices)


def sizes(plan):
    def ps(v, kernel):
        return kernel if v == "kernel" else int(v[:-1]) * K
    out = []
    for c in plan.cells:
        kps = int(c.config["kernel"]["page_size"][:-1]) * K
        out.append((kps // K, ps(c.config["process"]["page_size"], kps) // K, c.config["folio"]["anon"],
                    c.config["folio"]["mthp_sizes"]))
    return out


def test_mthp_gap_is_pedros_matrix(conf_dir):
    plan = plan_for(conf_dir, "+experiment=mthp_gap")
    assert plan.experiment == "mthp_gap"
    small, mid, big = ["16K", "32K", "64K"], ["64K", "256K", "2M"], ["2M"]
    # (kernel K, process K, folio.anon, mthp sizes) in grid order: anon x process x kernel
    expected = []
    for anon in ("base", "mthp", "mthp_only"):
        expected += [(4, 4, anon, small), (16, 16, anon, mid), (64, 64, anon, big),
                     (4, 16, anon, small), (4, 64, anon, small), (16, 64, anon, mid)]
    assert sizes(plan) == expected
    assert [label for label, _ in plan.skipped] == [
        f"folio.anon={a} process.page_size=16K kernel=64k folio.mthp_sizes=[2M]"
        for a in ("base", "mthp", "mthp_only")]
    assert plan.excluded == 6
    assert len({c.cell_key for c in plan.cells}) == 18
    assert plan.cells[0].config["workload"]["working_set"] == "1G"
    assert plan.cells[0].config["workload"]["accesses"] == 10_000_000


def test_command_line_pins_a_zipped_key(conf_dir):
    plan = plan_for(conf_dir, "+experiment=mthp_gap", "kernel=16k", "workload.accesses=5000")
    assert sizes(plan) == [(16, k, a, ["64K", "256K", "2M"])
                           for a in ("base", "mthp", "mthp_only") for k in (16, 64)]
    assert {c.config["workload"]["accesses"] for c in plan.cells} == {5000}


def test_range_glob_and_exclude(conf_dir):
    write_experiment(conf_dir, "g", """\
# @package _global_
sweep:
  grid:
    kernel: glob(*k)
    seed: range(0,3)
  exclude:
    - {kernel: 4k, seed: "0,2"}
    - {memory.fragmentation: 0.0, seed: 1, kernel: 64k}
""")
    plan = plan_for(conf_dir, "+experiment=g")
    assert [(c.config["kernel"]["page_size"], c.config["seed"]) for c in plan.cells] == [
        ("16K", 0), ("16K", 1), ("16K", 2), ("4K", 1), ("64K", 0), ("64K", 2)]
    assert plan.excluded == 3


def test_zip_needs_equal_lengths(conf_dir):
    write_experiment(conf_dir, "z", """\
# @package _global_
sweep:
  zip:
    - {seed: "1,2,3", workload.accesses: "10,20"}
""")
    with pytest.raises(ConfigError) as e:
        plan_for(conf_dir, "+experiment=z")
    assert str(e.value) == "sweep.zip[0]: zipped keys need equally many values; got seed: 3, workload.accesses: 2"


def test_bad_value_in_grid_names_the_key(conf_dir):
    write_experiment(conf_dir, "b", """\
# @package _global_
sweep:
  grid:
    folio.anon: base,huge
""")
    with pytest.raises(ConfigError) as e:
        plan_for(conf_dir, "+experiment=b")
    assert str(e.value) == "folio.anon: 'huge' is not allowed; allowed values: base, mthp, mthp_only"
    write_experiment(conf_dir, "t", """\
# @package _global_
sweep:
  grid:
    workload.accesses: 10,lots
""")
    with pytest.raises(ConfigError) as e:
        plan_for(conf_dir, "+experiment=t")
    assert str(e.value).startswith("workload.accesses: 'lots': Value 'lots' of type 'str' could not be "
                                   "converted to Integer")


def test_cell_key_covers_config_and_model_version_only(conf_dir):
    a = plan_for(conf_dir, "+experiment=tiny", "kernel.page_size=4K")
    b = plan_for(conf_dir, "+experiment=tiny", "kernel.page_size=4K", "results.dir=/elsewhere",
                 "executor=serial", "sweep.max_retries=0")
    c = plan_for(conf_dir, "+experiment=tiny", "kernel.page_size=4K", model_version="m2")
    assert len(a.cells) == 2
    assert [x.cell_key for x in a.cells] == [x.cell_key for x in b.cells]
    assert [x.config_key for x in a.cells] == [x.config_key for x in c.cells]
    assert not {x.cell_key for x in a.cells} & {x.cell_key for x in c.cells}
    cfg = a.cells[0].config
    assert a.cells[0].cell_key == cell_key(cfg, "m1")
    assert a.cells[0].config_key == config_key(cfg)
    # key order in the config does not matter: the JSON is canonical
    assert cell_key(dict(reversed(list(cfg.items()))), "m1") == cell_key(cfg, "m1")


def test_ablation_node_enters_the_config_only_when_set(conf_dir):
    """A cell with ablation off has the config (and so the key) it had before the node
    existed; one with ablation.against set carries it and gets its own key."""
    off = plan_for(conf_dir, "+experiment=tiny", "kernel.page_size=4K", "process.page_size=kernel")
    on = plan_for(conf_dir, "+experiment=tiny", "kernel.page_size=4K", "process.page_size=kernel",
                  "ablation.against=64K")
    assert all("ablation" not in x.config for x in off.cells)
    assert [x.config["ablation"] for x in on.cells] == [{"against": "64K"}] * len(on.cells)
    assert not {x.cell_key for x in off.cells} & {x.cell_key for x in on.cells}


@pytest.mark.parametrize("name,cells,skipped,excluded", [
    ("page_size_tradeoff workload=random", 6, 1, 2),     # one workload of five: 30, 5, 10
    ("pagecache_policy", 150, 0, 90),
    ("native_pgtable", 42, 0, 12),
    ("eof_overhang", 9, 0, 0),
    ("abi_compat", 12, 2, 4),
    ("gap_attribution", 8, 0, 0),
])
def test_other_experiments_expand(conf_dir, name, cells, skipped, excluded):
    """Every shipped experiment plans (workload groups stood in by the schema default)."""
    wl = conf_dir / "workload"
    wl.mkdir(exist_ok=True)
    for w in ("random", "zipf", "trace", "small_files", "mixed", "elf_tree"):
        if not (wl / f"{w}.yaml").exists():
            kind = "elf_tree" if w == "elf_tree" else "synthetic"
            (wl / f"{w}.yaml").write_text(f"name: {w}\nkind: {kind}\npath: /usr/bin\n")
    experiment, *pins = name.split()
    plan = plan_for(conf_dir, f"+experiment={experiment}", *pins)
    assert (len(plan.cells), len(plan.skipped), plan.excluded) == (cells, skipped, excluded)
