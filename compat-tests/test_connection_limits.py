"""Connection limits (Kafka's max.connections, max.connections.per.ip) and per-connection memory.

- Over `max.connections.per.ip` the broker closes a new connection at once; the
  others are still served, and closing one lets the next one in.
- At `max.connections` the broker stops accepting: a new connection waits, unanswered,
  until one of the open ones closes, and is then served.
- Connection churn does not make the broker's memory grow: RSS after many cycles of
  opened-and-closed connections stays near its RSS after the first cycle.
- librdkafka (which opens a few connections per client) works under a per-IP limit.
"""

from __future__ import annotations

import resource
import socket
import time

import pytest
from confluent_kafka import Consumer

from lib import wire
from lib.clients import client_conf, create_topic, poll_messages, produce, unique_topic

HOST = "127.0.0.1"


def _api_versions_frame(cid: int = 1) -> bytes:
    return wire.frame(wire.request_header_v1(wire.API_VERSIONS, 0, cid) + wire.api_versions_body(0))


def _served(port: int, timeout: float = 10.0) -> wire.Conn:
    """A connection whose ApiVersions is answered. Retried briefly: the slot of a
    connection the client just closed (the harness' readiness probe) is freed once
    the broker sees it closed, a moment later."""
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


def _still_served(conns: list[wire.Conn]) -> None:
    for c in conns:
        assert wire.api_versions(c, 0).error_code == wire.NONE


def _rejected_at_once(port: int) -> bool:
    """Opens a connection and tells whether the broker closes it (within 5 s) without answering."""
    s = wire.connect(HOST, port, timeout=5)
    try:
        try:
            s.sendall(_api_versions_frame())
        except OSError:
            return True  # already closed by the broker
        return wire.wait_closed(s, timeout=5)
    finally:
        s.close()


def test_per_ip_limit_closes_the_extra_connection_at_once(weir_factory):
    w = weir_factory({"max.connections.per.ip": 5})
    conns = [_served(w.port) for _ in range(5)]
    try:
        t0 = time.monotonic()
        assert _rejected_at_once(w.port), "the 6th connection from 127.0.0.1 was not closed"
        assert time.monotonic() - t0 < 3, "the 6th connection was not closed at once"
        _still_served(conns)
        # Once one closes, a new connection is accepted and served.
        conns.pop().close()
        conns.append(_served(w.port))
        _still_served(conns)
        # And the limit holds again.
        assert _rejected_at_once(w.port)
    finally:
        for c in conns:
            c.close()
    w.stop()
    assert "Rejected connection from /127.0.0.1, address already has the configured maximum of 5 connections" \
        in w.log_path.read_text(errors="replace")


def test_per_ip_override_wins_over_the_default(weir_factory):
    w = weir_factory({"max.connections.per.ip": 1, "max.connections.per.ip.overrides": "127.0.0.1:3"})
    conns = [_served(w.port) for _ in range(3)]
    try:
        assert _rejected_at_once(w.port)
        _still_served(conns)
    finally:
        for c in conns:
            c.close()


def test_max_connections_stops_accepting_until_one_closes(weir_factory):
    w = weir_factory({"max.connections": 5})
    conns = [_served(w.port) for _ in range(5)]
    sixth = wire.connect(HOST, w.port, timeout=10)
    try:
        # The kernel completes the handshake (the listen backlog), but the broker does not
        # accept the connection: the request gets no answer, and the socket is not closed.
        sixth.sendall(_api_versions_frame(cid=7))
        sixth.settimeout(1.5)
        try:
            data = sixth.recv(4)
        except socket.timeout:
            data = None
        assert data is None, f"the 6th connection got {data!r} while the broker was at max.connections"
        _still_served(conns)
        # One closes: the waiting connection is accepted and its request served.
        conns.pop(0).close()
        sixth.settimeout(10)
        r = wire.Reader(wire.recv_frame(sixth))
        assert r.i32() == 7
        assert wire.parse_api_versions(r, 0).error_code == wire.NONE
        _still_served(conns)
    finally:
        sixth.close()
        for c in conns:
            c.close()
    # Every slot comes back: five new connections are served.
    conns = [_served(w.port) for _ in range(5)]
    for c in conns:
        c.close()


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
    first = w.status_kib("VmRSS")
    rss = [first]
    for _ in range(cycles - 1):
        _churn(w.port, per_cycle)
        time.sleep(0.05)
        rss.append(w.status_kib("VmRSS"))
    time.sleep(0.3)
    last = w.status_kib("VmRSS")
    assert last < first + 30 * 1024, (
        f"RSS grew from {first // 1024} MB after the first cycle to {last // 1024} MB after {cycles} cycles "
        f"of {per_cycle} connections (per cycle, MB: {[r // 1024 for r in rss]})")
    # And the broker still serves.
    _served(w.port).close()


def test_confluent_round_trip_under_a_per_ip_limit(weir_factory):
    w = weir_factory({"max.connections.per.ip": 10, "group.initial.rebalance.delay.ms": 0})
    topic = unique_topic("conn-limit")
    create_topic(w.bootstrap, topic, partitions=3)
    records = [{"key": f"k{i}".encode(), "value": f"v{i}".encode()} for i in range(300)]
    delivered = produce(w.bootstrap, topic, records)
    assert len(delivered) == 300
    c = Consumer(client_conf(w.bootstrap, **{"group.id": unique_topic("conn-limit-g"), "auto.offset.reset": "earliest",
                                             "enable.auto.commit": False}))
    try:
        c.subscribe([topic])
        got = poll_messages(c, 300, timeout=30)
        assert sorted(m.value() for m in got) == sorted(r["value"] for r in records)
    finally:
        c.close()
    w.stop()
    assert "Rejected connection" not in w.log_path.read_text(errors="replace")
