"""pagecache_policy cells: files cached by read() first, then mapped by a 64K process on a
4K kernel. fixed maps the small folios (a conflict per folio, counted); drop_reread drops
and re-reads them at the process order (conversions counted); always_max caches every
file at 64K, small ones included, and so costs the most memory."""

from kernel_model.simulate import simulate

BASE = ("kernel=4k", "workload=small_files", "workload.read_before_mmap=true", "workload.nr_small_files=200",
        "process.page_size=64K")


def cell(cell_config, policy):
    return simulate(cell_config(*BASE, f"folio.pagecache={policy}"))


def test_read_then_mmap_per_policy(cell_config):
    fixed, drop, always = (cell(cell_config, p) for p in ("fixed", "drop_reread", "always_max"))
    # How many conflicts and conversions there are depends on which of the small folios of
    # readahead's first windows the seeded sample of touched pages hits (one per fault
    # that meets them): not knowable by hand, so only "some, and none of the other kind".
    assert fixed["pagecache_order_conflicts"] > 0 and fixed["pagecache_conversions"] == 0
    assert drop["pagecache_conversions"] > 0 and drop["pagecache_order_conflicts"] == 0
    assert drop["pagecache_conversion_failures"] == 0
    assert always["pagecache_bytes"] > fixed["pagecache_bytes"] == drop["pagecache_bytes"]
