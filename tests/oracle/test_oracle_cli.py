"""The oracle's parts that need no live kernel: knob parsing, the config mapping, the
restoring context, the harness output parser, the CLI's refusals."""

import signal

import pytest

from kernel_model import oracle
from kernel_model.oracle_scenarios import PATTERNS, SCENARIOS, pattern


def _fake_sysfs(root, enabled="madvise", sizes=None, zero="1"):
    root.mkdir(exist_ok=True)
    (root / "enabled").write_text(f"always [{enabled}] never\n" if enabled == "madvise" else f"[{enabled}] madvise\n")
    (root / "defrag").write_text("always defer [madvise] never\n")
    (root / "use_zero_page").write_text(zero + "\n")
    for kb, v in (sizes or {}).items():
        d = root / f"hugepages-{kb}kB"
        d.mkdir()
        (d / "enabled").write_text(" ".join(f"[{w}]" if w == v else w for w in ("always", "inherit", "madvise", "never")))
    return root


def test_host_thp_reads_the_selected_values(tmp_path):
    root = _fake_sysfs(tmp_path / "thp", sizes={64: "always", 2048: "inherit", 16: "never"})
    host = oracle.host_thp(root)
    assert host == {"enabled": "madvise", "defrag": "madvise", "use_zero_page": True,
                    "sizes": {16384: "never", 65536: "always", 2097152: "inherit"}, "anon_beside_full": None}


def test_model_policy_follows_the_knobs_and_the_madvise():
    host = {"enabled": "madvise", "use_zero_page": False,
            "sizes": {16384: "madvise", 65536: "always", 2097152: "inherit"}}
    plain = oracle.model_policy(host, None)
    assert (plain.anon, plain.mthp_sizes, plain.thp_pmd, plain.huge_zero_page) == ("mthp", (65536,), False, False)
    huge = oracle.model_policy(host, "hugepage")
    assert (huge.anon, huge.mthp_sizes, huge.thp_pmd) == ("mthp", (16384, 65536), True)
    off = oracle.model_policy(host, "nohugepage")
    assert (off.anon, off.thp_pmd) == ("base", False)


def test_parse_set_thp(tmp_path):
    host = {"sizes": {16384: "never", 65536: "never", 2097152: "inherit"}}
    got = oracle.parse_set_thp(["madvise", "mthp=64K"], host)
    assert got == {oracle.THP / "enabled": "madvise", oracle.THP / "hugepages-16kB" / "enabled": "never",
                   oracle.THP / "hugepages-64kB" / "enabled": "always"}
    with pytest.raises(ValueError, match="no hugepages-<size>kB knob"):
        oracle.parse_set_thp(["mthp=128K"], host)
    with pytest.raises(ValueError, match="is not never"):
        oracle.parse_set_thp(["sometimes"], host)


def test_thp_settings_restore_after_an_error_and_sigterm(tmp_path):
    knob = tmp_path / "enabled"
    knob.write_text("always [madvise] never\n")
    with pytest.raises(RuntimeError):
        with oracle.thp_settings({knob: "never"}):
            assert knob.read_text() == "never"
            raise RuntimeError("boom")
    assert knob.read_text() == "madvise"
    with pytest.raises(SystemExit):
        with oracle.thp_settings({knob: "always"}):
            signal.raise_signal(signal.SIGTERM)
    assert knob.read_text() == "madvise"


def test_parse_output():
    text = ("map 0 0x7f0000000000\naccess 0 minflt 7 majflt 0\nfork child\naccess 0 minflt 3 majflt 0\n"
            "report 0 rss 8192 anon 4096 anonhuge 0 shmempmd 0 filepmd 0\n"
            "folios 0 pages 3 zero 1 hugezero 0 4096:1 65536:1\n")
    assert oracle.parse_output(text) == {
        "access": [7, 3],
        "report": {0: {"rss": 8192, "anon": 4096, "anonhuge": 0,
                       "folios": {"pages": 3, "zero": 1, "hugezero": 0, "sizes": {4096: 1, 65536: 1}}}}}


def test_not_linux_is_one_line_and_status_2(monkeypatch, capsys):
    monkeypatch.setattr(oracle.platform, "system", lambda: "Darwin")
    assert oracle.main(["--pattern", "uniform"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "needs Linux" in out[0]


def test_no_compiler_is_status_2(monkeypatch, capsys):
    monkeypatch.setattr(oracle.platform, "system", lambda: "Linux")
    monkeypatch.setattr(oracle, "compiler", lambda: None)
    assert oracle.main([]) == 2
    assert "no C compiler" in capsys.readouterr().out


def test_patterns_are_seeded_and_inside_the_region():
    assert len(PATTERNS) >= 8 and len(SCENARIOS) >= 6
    size = 4 << 20
    for name in PATTERNS:
        a = pattern(name, size, 5000, 11)
        b = pattern(name, size, 5000, 11)
        assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
        assert a[0].min() >= 0 and a[0].max() < size and a[0].size == a[1].size
    with pytest.raises(ValueError, match="unknown pattern"):
        pattern("nope", size, 1, 0)


def test_trace_steps_split_far_clusters_and_keep_alignment(tmp_path):
    import numpy as np

    addrs = np.array([0x7000_0020_1234, 0x7000_0040_0008, 0x7FFF_FF00_0010, 0x7000_0020_1000], np.int64)
    path = tmp_path / "t.npz"
    np.savez(path, addr=addrs, is_write=np.array([1, 0, 1, 0], bool))
    steps = oracle.trace_steps(str(path), "hugepage")
    maps = [s for s in steps if s.op == "map"]
    acc = [s for s in steps if s.op == "access"]
    assert [(m.rid, m.length) for m in maps] == [(0, 0x40_1000 - 0x20_0000 + 0x0), (1, 0x1000)]
    assert acc[0].offsets.tolist() == [0x1234, 0x20_0008, 0x1000] and acc[0].is_write.tolist() == [True, False, False]
    assert acc[1].offsets.tolist() == [0x0010] and acc[1].is_write.tolist() == [True]
    assert [s.op for s in steps].count("madvise") == 2 and [s.rid for s in steps if s.op == "report"] == [0, 1]
