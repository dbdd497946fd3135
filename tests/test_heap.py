"""The fixed mmap threshold that keeps the target's peak RSS flat over long runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from target_dap_sql.heap import is_glibc

pytestmark = pytest.mark.skipif(not is_glibc(), reason="glibc only")

# Frees 80 MB of 400 kB blocks that sit between small live blocks; prints the MB returned to
# the system. glibc's default (dynamic) threshold puts them on the heap after a 1 MiB block
# was freed, so nothing comes back; with the fixed threshold every one was mapped.
PROBE = textwrap.dedent("""
    import os, sys
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    how = sys.argv[1]
    if how == "steady":
        from target_dap_sql.heap import steady_heap
        print(steady_heap())
    elif how == "target":
        from target_dap_sql.target import TargetDapSql
        TargetDapSql.get_singer_command()
    big = bytearray(1 << 20)
    del big
    bigs, keep = [], []
    for _ in range(200):
        bigs.append(bytearray(400_000))
        keep.append(bytearray(2000))
    before = rss_mb()
    del bigs
    print(round(before - rss_mb()))
""")


def _returned_mb(how: str, **env: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, how], capture_output=True, text=True,
                         check=True, env={**os.environ, **env}, timeout=120)
    return out.stdout.split()


def test_default_glibc_keeps_the_freed_blocks() -> None:
    # the control: without the setting the probe sees (almost) nothing returned
    assert int(_returned_mb("none")[-1]) < 20


@pytest.mark.parametrize("how", ["steady", "target"])
def test_fixed_threshold_returns_freed_blocks(how: str) -> None:
    out = _returned_mb(how)
    if how == "steady":
        assert out[0] == "True"
    assert int(out[-1]) > 60


def test_users_own_threshold_wins() -> None:
    out = _returned_mb("steady", MALLOC_MMAP_THRESHOLD_="4194304")
    assert out[0] == "False"
