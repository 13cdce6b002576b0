import pytest

from kernel_model.units import format_size, ilog2, parse_page_size, parse_size


@pytest.mark.parametrize("text,n", [("4K", 4096), ("4k", 4096), ("64KiB", 65536), ("8G", 8 << 30),
                                    (4096, 4096), ("4096", 4096), ("1M", 1 << 20), ("0", 0)])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", ["", "K", "4X", "-4K", -1, True, "1.5K"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError, match="memory.size"):
        parse_size(bad, what="memory.size")


def test_page_sizes():
    assert [parse_page_size(x) for x in ("4K", "16K", "64K", 65536)] == [4096, 16384, 65536, 65536]
    with pytest.raises(ValueError, match=r"kernel.page_size: '8K' is not a page size; allowed: 4K, 16K, 64K"):
        parse_page_size("8K", what="kernel.page_size")


def test_format_and_log():
    assert [format_size(n) for n in (4096, 65536, 3, 1 << 30, 1536)] == ["4K", "64K", "3", "1G", "1536"]
    assert ilog2(65536) == 16
    with pytest.raises(ValueError):
        ilog2(12)
