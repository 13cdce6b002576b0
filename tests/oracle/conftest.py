"""The live kernel as the oracle: the fixtures skip (with the reason) where it cannot run."""

import os

import pytest

from kernel_model import oracle
from kernel_model.oracle_scenarios import PMD


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    """(host knobs, work dir) when the running kernel can be compared here, else skip."""
    try:
        oracle.check_host()
        oracle.harness_binary()
    except oracle.Unavailable as e:
        pytest.skip(str(e))
    return oracle.host_thp(), tmp_path_factory.mktemp("oracle")


@pytest.fixture(scope="session")
def pmd_host(live):
    """The host knobs with PMD THP allowed under MADV_HUGEPAGE. When the host forbids it,
    the knobs are changed only as root, through the oracle's restoring context; else skip."""
    host, work = live
    if oracle.size_enabled(host, PMD, "hugepage"):
        yield host, work
        return
    if os.geteuid() != 0:
        pytest.skip(f"PMD THP is off on this host ({oracle.describe_host(host)}) and changing it needs root")
    changes = {oracle.THP / "enabled": "madvise", oracle.THP / f"hugepages-{PMD // 1024}kB" / "enabled": "inherit"}
    with oracle.thp_settings(changes):
        yield oracle.host_thp(), work
