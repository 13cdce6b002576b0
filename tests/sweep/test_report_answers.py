"""The answer paragraph of each experiment's report, against hand computations on small
fake runs. The question comes from the experiment's YAML (report.question)."""

import io

from sweep.app import run
from sweep.report import load_spec, main
from tests.sweep.test_report import K4, K16, K64, report_dir, write_cells


def answer_of(results, experiment, conf_dir=None) -> str:
    from sweep.report import report

    out = report(results, experiment, conf_dir=conf_dir)
    md = (out / "report.md").read_text()
    return md.split("**Answer:** ", 1)[1].split("\n\nRun `", 1)[0]


def test_mthp_gap_answer(conf_dir, results):
    """tests.sweep.test_report.mthp_metrics: walk_mem_refs 1600 at 4K base, 100 at 64K base,
    800 with mTHP, 400 with only mTHP, 400 at 16K; l2_tlb_misses half of each. The 64K
    reduction is 1500 refs (750 misses): mTHP recovers 800/1500 = 53.3%, only-mTHP
    1200/1500 = 80.0%, a 64K process on the 4K kernel 0/1500, the 16K kernel 80.0%."""
    code = run(["executor=serial", "cell_fn=tests.sweep.test_report:mthp_metrics", f"results.dir={results}",
                "sweep.progress=false", "+experiment=mthp_gap"], config_dir=conf_dir, out=io.StringIO())
    assert code == 0
    assert answer_of(results, "mthp_gap") == (
        "The 64K kernel cuts walk_mem_refs by 93.8% (1600 to 100) and l2_tlb_misses by 93.8% (800 to 50) "
        "against the 4K kernel with base pages. "
        "4K+mTHP recovers 53.3% of the walk_mem_refs reduction and 53.3% of the l2_tlb_misses reduction. "
        "Only-mTHP recovers 80.0% of the walk_mem_refs reduction and 80.0% of the l2_tlb_misses reduction. "
        "A 64K process on the 4K kernel recovers 0.0% of the walk_mem_refs reduction and 0.0% of the "
        "l2_tlb_misses reduction. "
        "The 16K kernel recovers 80.0% of the walk_mem_refs reduction and 80.0% of the l2_tlb_misses reduction. "
        "What mTHP leaves on the table (20.0% of the walk_mem_refs reduction at best) is what no folio size "
        "gives a 4K kernel: its extra page-table level, the reach of its walk cache and of its page-table "
        "lines in the data caches, and TLB entries for memory outside mTHP folios. "
        "Page tables, as a share of the 4K base's 512.0 KiB: 4K+mTHP 100.0%, the 64K kernel 6.2%.")
    md = (report_dir(results, "mthp_gap") / "report.md").read_text()
    assert md.splitlines()[2] == ("**Question:** How much of the 64K kernel's advantage (fewer page-table "
                                  "levels, walk-cache reach, smaller page-table cache footprint) does a 4K "
                                  "kernel with mTHP recover, and what is left?")


def test_mthp_gap_answer_per_workload_and_missing_base(tmp_path):
    results = tmp_path / "results"
    cells = []
    for wl, (base, mthp, k64) in (("random", (1000, 700, 400)), ("zipf", (90, 60, 50))):
        for kps, anon, walk in ((K4, "base", base), (K4, "mthp", mthp), (K64, "base", k64)):
            cells.append(({"workload_name": wl, "kernel_page_size": kps, "process_page_size": kps,
                           "folio_anon": anon}, {"walk_mem_refs": walk, "l2_tlb_misses": walk // 10,
                                                 "pgtable_bytes_linux": 4096}, "ok"))
    write_cells(results, "mthp_gap", "r1", cells)
    text = answer_of(results, "mthp_gap")
    paragraphs = text.split("\n\n")
    # random: 300 of 600 refs recovered (50.0%), 30 of 60 misses (50.0%); zipf: 30 of 40 (75.0%),
    # misses 9 -> 6 -> 5: 3 of 4 (75.0%).
    assert paragraphs[0].startswith("**random:** The 64K kernel cuts walk_mem_refs by 60.0% (1000 to 400) and "
                                    "l2_tlb_misses by 60.0% (100 to 40)")
    assert "4K+mTHP recovers 50.0% of the walk_mem_refs reduction and 50.0% of the l2_tlb_misses" in paragraphs[0]
    assert paragraphs[1].startswith("**zipf:** The 64K kernel cuts walk_mem_refs by 44.4% (90 to 50)")
    assert "4K+mTHP recovers 75.0% of the walk_mem_refs reduction and 75.0% of the l2_tlb_misses" in paragraphs[1]
    assert "(25.0% of the walk_mem_refs reduction at best)" in paragraphs[1]
    write_cells(results, "mthp_gap", "r3", [
        ({"kernel_page_size": kps, "process_page_size": kps, "folio_anon": anon},
         {"walk_mem_refs": walk, "l2_tlb_misses": walk, "pgtable_bytes_linux": 4096}, "ok")
        for kps, anon, walk in ((K4, "base", 1000), (K4, "mthp_only", 4), (K64, "base", 5))], started=8)
    # only-mTHP: (1000 - 4) / (1000 - 5) = 100.1%: nothing left
    assert ("mTHP recovers all of the walk_mem_refs reduction here (100.1%): nothing is left for a larger page "
            "geometry to win in this workload.") in answer_of(results, "mthp_gap")
    write_cells(results, "mthp_gap", "r2", [c for c in cells if c[0]["kernel_page_size"] == K4], started=9)
    assert answer_of(results, "mthp_gap").startswith(
        "**random:** no answer: the run lacks the 4K base cell or the 64K-kernel base cell.")


def test_page_size_tradeoff_answer(tmp_path):
    """random: k4K p64K (160, 300) against k16K (150, 400): memory 160/150 - 1 = +6.7%,
    cycles 300/400 - 1 = -25.0%: a trade-off (p16K, 200/900, is costlier in cycles).
    zipf: k4K p16K (80, 100) against k16K (90, 200): -11.1%, -50.0%: better."""
    results = tmp_path / "results"
    points = {"random": {(K4, K4): (100, 900), (K4, K16): (155, 700), (K4, K64): (160, 300), (K16, K16): (150, 400)},
              "zipf": {(K4, K4): (70, 300), (K4, K16): (80, 100), (K4, K64): (85, 90), (K16, K16): (90, 200)}}
    write_cells(results, "page_size_tradeoff", "r1", [
        ({"workload_name": wl, "kernel_page_size": k, "process_page_size": p}, {"total_bytes": m, "walk_cycles": c}, "ok")
        for wl, pts in points.items() for (k, p), (m, c) in pts.items()])
    # zipf: both per-process designs beat the 16K kernel; the cheaper in cycles (p64K: 90) wins:
    # 85/90 - 1 = -5.6%, 90/200 - 1 = -55.0%.
    assert answer_of(results, "page_size_tradeoff") == (
        "Against a fixed 16K kernel, per workload, the better per-process design: "
        "random: a 64K process on the 4K kernel changes walk_cycles by -25.0% and total memory by +6.7% "
        "(a trade-off); zipf: a 64K process on the 4K kernel changes walk_cycles by -55.0% and total memory "
        "by -5.6% (better). Over 2 workload(s): 1 better, 1 a trade-off (better: no more memory and no more "
        "walk_cycles, less of one).")


def test_pagecache_eof_native_abi_answers(tmp_path):
    results = tmp_path / "results"
    cells = []
    for policy, nbytes, fails in (("fixed", 1 << 20, 0), ("always_max", 4 << 20, 0), ("drop_reread", 1572864, 0)):
        cells.append(({"workload_name": "small_files", "process_page_size": K64, "folio_pagecache": policy,
                       "workload_mlock_fraction": 0.0}, {"pagecache_bytes": nbytes,
                                                         "pagecache_conversion_failures": fails}, "ok"))
        cells.append(({"workload_name": "small_files", "process_page_size": K64, "folio_pagecache": policy,
                       "workload_mlock_fraction": 0.5}, {"pagecache_bytes": nbytes,
                                                         "pagecache_conversion_failures": 3 * (policy == "drop_reread")},
                      "ok"))
    write_cells(results, "pagecache_policy", "r1", cells)
    assert answer_of(results, "pagecache_policy") == (
        "Against the fixed policy (folios of the kernel page size): small_files with a 64K process: "
        "pagecache_bytes 1.0 MiB under fixed; always_max +300.0%, drop_reread +50.0%. With part of the mapped "
        "pages mlocked or long-term pinned by another process, conversions that failed (small folios kept): "
        "fixed 0, always_max 0, drop_reread 3.")

    write_cells(results, "eof_overhang", "r1", [
        ({"process_page_size": K64, "abi_overhang": "anon_fault"}, {"padding_bytes": 64 * 53248, "sigbus": 0}, "ok"),
        ({"process_page_size": K64, "abi_overhang": "sigbus"}, {"padding_bytes": 0, "sigbus": 64}, "ok"),
        ({"process_page_size": K64, "abi_overhang": "anon_vma"},
         {"padding_bytes": 0, "sigbus": 0, "ev_overhang_vmas": 64}, "ok"),
        ({"process_page_size": K4, "abi_overhang": "anon_fault"}, {"padding_bytes": 0, "sigbus": 0}, "ok")])
    assert answer_of(results, "eof_overhang") == (
        "With a 64K process page: anonymous padding on fault costs 3.2 MiB and raises 0 SIGBUS; SIGBUS raises "
        "64 signal(s) an application does not expect; an extra anonymous VMA adds 64 VMA(s) and 0.0 KiB of "
        "padding.")

    write_cells(results, "native_pgtable", "r1", [
        ({"arch_native_pgtable": mode, "process_page_size": K64},
         {"pgtable_bytes_linux": 40960, "pgtable_bytes_native": native, "walk_mem_refs": refs,
          "native_fallbacks": fb}, "ok")
        for mode, native, refs, fb in (("off", 0, 400, 0), ("mirror", 8192, 100, 0), ("on_demand", 4096, 120, 2))])
    assert answer_of(results, "native_pgtable") == (
        "a 64K process's native table: mirror costs 8.0 KiB (20.0% of the Linux table), walk_mem_refs -75.0% "
        "against none, 0 fallback(s); on_demand costs 4.0 KiB (10.0% of the Linux table), walk_mem_refs "
        "-70.0% against none, 2 fallback(s).")

    write_cells(results, "abi_compat", "r1", [
        ({"kernel_page_size": K4, "process_page_size": K4}, {"elf_files": 8, "elf_ok": 8, "elf_failed": 0}, "ok"),
        ({"kernel_page_size": K4, "process_page_size": K64},
         {"elf_files": 8, "elf_ok": 2, "elf_failed": 6, "elf_failed_p_align": 4, "elf_failed_congruence": 2,
          "pagemap_pfn_unit_mismatch": 16}, "ok")])
    assert answer_of(results, "abi_compat") == (
        "p4K: 0.0% of 8 ELF files fail to load; p64K: 75.0% of 8 ELF files fail to load (most often: p_align, "
        "4). pagemap returns PFNs in kernel pages where the process counts in its own: p64K 16 entries.")


def test_generic_answer_from_a_yaml_report_node(conf_dir, tmp_path):
    """An experiment with a report node and no answer of its own: best and worst by its metric."""
    (conf_dir / "experiment" / "custom.yaml").write_text(
        "# @package _global_\nreport:\n  question: Which kernel faults least?\n  keys: [kernel_page_size]\n"
        "  metric: faults\n  better: lower\n")
    results = tmp_path / "results"
    write_cells(results, "custom", "r1", [({"kernel_page_size": K4}, {"faults": 40}, "ok"),
                                          ({"kernel_page_size": K16}, {"faults": 30}, "ok"),
                                          ({"kernel_page_size": K64}, {"faults": 10}, "ok")])
    assert answer_of(results, "custom", conf_dir) == (
        "Best in faults (lower is better): k64K (10); worst: k4K (40), -75.0% from worst to best.")
    (conf_dir / "experiment" / "custom.yaml").write_text("report:\n  better: sideways\n")
    assert main(["--experiment", "custom", "--results", str(results)]) == 0   # the shipped conf: no such file
    from sweep.report import report
    from sweep.report.load import ReportError
    import pytest

    with pytest.raises(ReportError, match=r"custom.yaml: report.better: 'sideways' is not one of lower, higher"):
        report(results, "custom", conf_dir=conf_dir)
    # the direction is the metric registry's (kernel_model/metrics.py): a stated one must agree
    (conf_dir / "experiment" / "custom.yaml").write_text("report:\n  metric: faults\n  better: higher\n")
    with pytest.raises(ReportError) as err:
        report(results, "custom", conf_dir=conf_dir)
    assert str(err.value) == (f"{conf_dir / 'experiment' / 'custom.yaml'}: report.better: 'higher' contradicts the "
                              "metric registry: faults is better lower (kernel_model/metrics.py); drop the key or "
                              "write lower")
    (conf_dir / "experiment" / "custom.yaml").write_text("report:\n  metric: elf_ok\n")
    assert load_spec("custom", conf_dir).better == "higher"


def test_machine_replay_answer_and_table(tmp_path):
    """4K: 64 MiB anon + 32 MiB page cache + 1 MiB tables = 97 MiB. 16K kernel: +8 MiB anon,
    +2 MiB page cache, -0.5 MiB tables: +9.5 MiB = +9.8% (9.5 / 97), most of it anon. A 4K
    kernel with 64K processes: +32 anon, +4 cache, +3 padding, +1 table (0.5 Linux, 1.5
    native): +40 MiB = +41.2%."""
    M = 2**20
    results = tmp_path / "results"
    designs = {(K4, K4, "base"): (64, 32, 0, 1, 0), (K16, K16, "base"): (72, 34, 0, 0.5, 0),
               (K4, K64, "base"): (96, 36, 3, 0.5, 1.5)}
    cells = []
    for (k, p, anon), (a, c, pad, lin, nat) in designs.items():
        m = {"anon_bytes": int(a * M), "pagecache_bytes": int(c * M), "padding_bytes": int(pad * M),
             "pgtable_bytes_linux": int(lin * M), "pgtable_bytes_native": int(nat * M)}
        m["total_bytes"] = sum(m.values())
        cells.append(({"kernel_page_size": k, "process_page_size": p, "folio_anon": anon}, m, "ok"))
    write_cells(results, "machine_replay", "r1", cells)
    assert answer_of(results, "machine_replay") == (
        "The captured machine needs 97.0 MiB under the 4K design (anon 64.0 MiB, page cache 32.0 MiB, page "
        "tables 1.0 MiB). A 4K kernel with 64K processes needs +41.2% (40.0 MiB, most of it anon +32.0 MiB); "
        "the 16K kernel needs +9.8% (9.5 MiB, most of it anon +8.0 MiB). Android's published figure for 16K "
        "pages (Android Developers Blog, August 2024) is about 9% more memory system-wide; "
        "this machine at 16K: +9.8%.")
    from tests.sweep.test_report import table

    md = (report_dir(results, "machine_replay") / "report.md").read_text()
    assert table(md)[0] == ["config", "anon_bytes", "pagecache_bytes", "padding_bytes", "pgtable_bytes",
                            "total_bytes", "total / 4K"]
    assert table(md)[1:] == [["k4K p4K", "67108864", "33554432", "0", "1048576", "101711872", "1"],
                             ["k4K p64K", "100663296", "37748736", "3145728", "2097152", "143654912", "1.412"],
                             ["k16K p16K", "75497472", "35651584", "0", "524288", "111673344", "1.098"]]
    assert (report_dir(results, "machine_replay") / "machine_replay.png").read_bytes()[:4] == b"\x89PNG"


def gap_metrics(cfg):
    """A gap_attribution cell function with known shares: the 4K kernel's walk cycles are
    1000; B takes off reach 300, levels 100 (64K only), walk_cache 50 and pt_lines 150 on
    their own, halved against 16K; on the zipf workload reach and pt_lines together take
    off 60 more (an interaction: 30 each)."""
    from kernel_model.attribution import FEATURES, NR_SUBSETS, metric_name

    k64 = cfg["ablation"]["against"] == "64K"
    cut = {"reach": 300, "contpte": 0, "levels": 100 if k64 else 0, "walk_cache": 50, "pt_lines": 150}
    out = {}
    for m in range(NR_SUBSETS):
        inside = {f for i, f in enumerate(FEATURES) if m >> i & 1}
        saved = sum(cut[f] for f in inside) * (1 if k64 else 0.5)
        if cfg["workload"]["name"] == "zipf" and {"reach", "pt_lines"} <= inside:
            saved += 60
        out[metric_name(m)] = int(1000 - saved)
    out["walk_cycles"] = out[metric_name(0)]
    return out


def test_gap_attribution_answer_and_table(conf_dir, results):
    """64K, random: gap 600 = reach 300 + levels 100 + walk_cache 50 + pt_lines 150 (50.0%,
    16.7%, 8.3%, 25.0%); zipf: gap 660, reach 330 and pt_lines 180 (the 60 of their
    interaction split evenly). 16K, random: 250 = reach 150, walk_cache 25, pt_lines 75."""
    code = run(["executor=serial", "cell_fn=tests.sweep.test_report_answers:gap_metrics", f"results.dir={results}",
                "sweep.progress=false", "+experiment=gap_attribution", "sweep.grid.workload=\"random,zipf\""],
               config_dir=conf_dir, out=io.StringIO())
    assert code == 0
    text = answer_of(results, "gap_attribution")
    assert text == (
        "The 16K kernel saves random: 25.0% of the 4K kernel's 1,000 walk cycles (TLB reach 60.0%, page-table "
        "lines in the caches 30.0%, walk-cache reach 10.0%, contpte 0.0%, fewer levels 0.0%); zipf: 31.0% of the "
        "4K kernel's 1,000 walk cycles (TLB reach 58.1%, page-table lines in the caches 33.9%, walk-cache reach "
        "8.1%, contpte 0.0%, fewer levels 0.0%). Larger TLB entries (TLB reach and contpte), which folios can "
        "give a 4K kernel, account for 58.1% to 60.0% of the gap; the rest (fewer levels, walk-cache reach, "
        "page-table lines in the caches) comes only with the 16K page-table granule.\n\n"
        "The 64K kernel saves random: 60.0% of the 4K kernel's 1,000 walk cycles (TLB reach 50.0%, page-table "
        "lines in the caches 25.0%, fewer levels 16.7%, walk-cache reach 8.3%, contpte 0.0%); zipf: 66.0% of the "
        "4K kernel's 1,000 walk cycles (TLB reach 50.0%, page-table lines in the caches 27.3%, fewer levels "
        "15.2%, walk-cache reach 7.6%, contpte 0.0%). Larger TLB entries (TLB reach and contpte), which folios "
        "can give a 4K kernel, account for 50.0% of the gap; the rest (fewer levels, walk-cache reach, "
        "page-table lines in the caches) comes only with the 64K page-table granule.\n\n"
        "Contpte takes no share here: no run folds a contiguous range on either kernel (none can with "
        "base folios; with folio=mthp some can).\n\n"
        "Each cause's share is its exact Shapley value over the 32 ablation runs; the shares sum to the gap "
        "exactly.")
    from tests.sweep.test_report import table

    md = (report_dir(results, "gap_attribution") / "report.md").read_text()
    assert table(md)[0][:9] == ["config", "walk_cycles A", "walk_cycles B", "gap", "reach", "contpte", "levels",
                                "walk_cache", "pt_lines"]
    assert [r[:9] for r in table(md)[1:]] == [
        ["random vs k16K", "1000", "750", "250", "150", "0", "0", "25", "75"],
        ["random vs k64K", "1000", "400", "600", "300", "0", "100", "50", "150"],
        ["zipf vs k16K", "1000", "690", "310", "180", "0", "0", "25", "105"],
        ["zipf vs k64K", "1000", "340", "660", "330", "0", "100", "50", "180"]]
    assert (report_dir(results, "gap_attribution") / "gap_attribution.png").read_bytes()[:4] == b"\x89PNG"
