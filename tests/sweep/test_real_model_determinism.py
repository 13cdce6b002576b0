"""Determinism with the real model: the same config and seed give identical metrics,
serially and on Ray (docs/design.md, Conventions: the same config and seed give the same
metrics)."""

from sweep.query import connect

SMALL = ("+experiment=tiny", "workload.working_set=8M", "workload.accesses=20000",
         "cell_fn=kernel_model.simulate:simulate", "memory.size=512M")
COLUMNS = ("select kernel_page_size, process_page_size, accesses, faults, l1_tlb_misses, l2_tlb_misses, "
           "walk_mem_refs, walk_cycles, anon_bytes, pgtable_bytes_linux, total_bytes from cells "
           "where status = 'ok' order by all")


def test_real_cells_equal_on_ray_and_serial(ray_session, sweep_run, results):
    serial = sweep_run(*SMALL)
    ray = sweep_run(*SMALL, f"results.dir={results}-ray", executor="ray")
    assert (serial[0], ray[0]) == (0, 0)
    rows = connect(results).sql(COLUMNS).fetchall()
    assert len(rows) == 5
    assert connect(f"{results}-ray").sql(COLUMNS).fetchall() == rows
    again = sweep_run(*SMALL, f"results.dir={results}-again", "sweep.force=true")
    assert again[0] == 0
    assert connect(f"{results}-again").sql(COLUMNS).fetchall() == rows
