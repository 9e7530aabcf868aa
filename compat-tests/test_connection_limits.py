"""Per-connection memory: connection churn does not make the broker's memory grow.

RSS after many cycles of opened-and-closed connections stays near its RSS after the
first cycle.
"""

from __future__ import annotations

import resource
import time

import pytest

from lib import wire

HOST = "127.0.0.1"


def _api_versions_frame(cid: int = 1) -> bytes:
    return wire.frame(wire.request_header_v1(wire.API_VERSIONS, 0, cid) + wire.api_versions_body(0))


def _served(port: int, timeout: float = 10.0) -> wire.Conn:
    """A connection whose ApiVersions is answered (retried briefly)."""
    deadline = time.monotonic() + timeout
    while True:
        c = wire.Conn(HOST, port, timeout=timeout)
        try:
            assert wire.api_versions(c, 0).error_code == wire.NONE
            return c
        except (wire.Closed, OSError):
            c.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _churn(port: int, n: int) -> None:
    """n connections open at once, an ApiVersions on each, then all closed."""
    socks = [wire.connect(HOST, port, timeout=30) for _ in range(n)]
    try:
        req = _api_versions_frame()
        for s in socks:
            s.sendall(req)
        for s in socks:
            wire.recv_frame(s)
    finally:
        for s in socks:
            s.close()


def test_connection_churn_returns_memory(weir_factory):
    cycles, per_cycle = 20, 1000
    # Both this process and the broker (started after) need a descriptor per connection.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = per_cycle + 500
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"needs {want} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    w = weir_factory()
    _churn(w.port, per_cycle)
    time.sleep(0.3)
    first = _rss_kb(w.pid)
    rss = [first]
    for _ in range(cycles - 1):
        _churn(w.port, per_cycle)
        time.sleep(0.05)
        rss.append(_rss_kb(w.pid))
    time.sleep(0.3)
    last = _rss_kb(w.pid)
    assert last < first + 30 * 1024, (
        f"RSS grew from {first // 1024} MB after the first cycle to {last // 1024} MB after {cycles} cycles "
        f"of {per_cycle} connections (per cycle, MB: {[r // 1024 for r in rss]})")
    # And the broker still serves.
    _served(w.port).close()
