"""brk(2) in process pages: mm/mmap.c SYSCALL_DEFINE1(brk), LTP brk01..02."""

from kernel_model.abi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE

RW = PROT_READ | PROT_WRITE


def test_brk_grows_and_shrinks_in_process_pages(proc, layout):
    ps = proc.page_size
    start = proc.mm.start_brk
    assert proc.brk(0) == start  # below start_brk: the current break
    assert proc.brk(start + 1) == start + 1
    assert layout(proc) == [(start, start + ps, RW)]
    assert proc.brk(start + ps) == start + ps  # same process page: no new VMA
    assert layout(proc) == [(start, start + ps, RW)]
    assert proc.brk(start + 3 * ps) == start + 3 * ps
    assert layout(proc) == [(start, start + 3 * ps, RW)]
    assert proc.touch(start + 2 * ps, write=True) == 0
    assert proc.brk(start + ps + 1) == start + ps + 1  # shrink: the tail pages go
    assert layout(proc) == [(start, start + 2 * ps, RW)]
    assert proc.brk(start) == start
    assert layout(proc) == []


def test_brk_refuses_to_run_into_a_mapping(proc, layout):
    ps = proc.page_size
    start = proc.mm.start_brk
    assert proc.mmap(start + 3 * ps, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED) == start + 3 * ps
    assert proc.brk(start + 2 * ps) == start + 2 * ps  # one process page stays free below
    assert proc.brk(start + 3 * ps) == start + 2 * ps  # refused: the old break comes back
    assert layout(proc) == [(start, start + 2 * ps, RW), (start + 3 * ps, start + 4 * ps, PROT_READ)]
