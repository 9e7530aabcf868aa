"""Crash and restart: every record acknowledged with acks=all survives kill -9 and a
clean stop, at the same offset and in order. A broker of its own per test."""

from __future__ import annotations

import threading
import time

import pytest

from confluent_kafka.admin import ConfigResource, ResourceType

from lib.clients import (
    admin,
    client_conf,
    consume_assigned,
    create_topic,
    produce,
    wait_for_partitions,
    wait_until,
    watermarks,
)

PARTITIONS = 3


class SteadyProducer(threading.Thread):
    """Produces `seq-<n>` values round-robin over the partitions until stopped
    (bounded by `max_records` and `max_seconds`); keeps every acknowledged record."""

    def __init__(self, bootstrap: str, topic: str, max_records: int = 50_000, max_seconds: float = 10.0):
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.max_records, self.max_seconds = max_records, max_seconds
        self.stop_event = threading.Event()
        self.acked: list[tuple[int, int, bytes]] = []  # (partition, offset, value)
        self.failed = 0
        self.sent = 0
        self.error: BaseException | None = None

    def _on_delivery(self, err, msg):
        if err is None:
            self.acked.append((msg.partition(), msg.offset(), msg.value()))
        else:
            self.failed += 1

    def run(self):
        from confluent_kafka import Producer

        try:
            p = Producer(client_conf(self.bootstrap, **{
                "acks": "all",
                "linger.ms": 2,
                # Ordering without idempotence: one request in flight per connection.
                "max.in.flight.requests.per.connection": 1,
                "message.timeout.ms": 30000,
                "reconnect.backoff.max.ms": 200,
            }))
            deadline = time.monotonic() + self.max_seconds
            while not self.stop_event.is_set() and self.sent < self.max_records and time.monotonic() < deadline:
                try:
                    p.produce(self.topic, value=f"seq-{self.sent}".encode(), partition=self.sent % PARTITIONS,
                              on_delivery=self._on_delivery)
                    self.sent += 1
                except BufferError:
                    pass
                p.poll(0.001 if self.sent % 100 == 0 else 0)
            p.flush(3)
            # Whatever was not acknowledged by now is dropped, so nothing reaches the restarted broker.
            p.purge(in_queue=True, in_flight=True)
            p.flush(0)
            p.poll(0)
            del p
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def _read_everything(bootstrap: str, topic: str) -> dict[tuple[int, int], bytes]:
    stored = {}
    for part in range(PARTITIONS):
        low, high = watermarks(bootstrap, topic, part)
        assert low == 0, f"partition {part} log start moved to {low}"
        if high == 0:
            continue
        for m in consume_assigned(bootstrap, topic, [part], high, timeout=60):
            stored[(m.partition(), m.offset())] = m.value()
        assert sorted(o for (p, o) in stored if p == part) == list(range(high)), f"gaps in partition {part}"
    return stored


def _check_acked_present(acked, stored):
    missing = [(p, o, v) for (p, o, v) in acked if stored.get((p, o)) != v]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost or changed, e.g. {missing[:5]}"
    # In order: within a partition, later offsets hold later sequence numbers.
    for part in range(PARTITIONS):
        seqs = [int(stored[k].split(b"-")[1]) for k in sorted(k for k in stored if k[0] == part)]
        assert seqs == sorted(seqs), f"partition {part} out of order"


def test_kill9_keeps_acknowledged_records(weir_factory, topic):
    w = weir_factory(name="weir-kill9")
    create_topic(w.bootstrap, topic, partitions=PARTITIONS)

    prod = SteadyProducer(w.bootstrap, topic)
    prod.start()
    try:
        wait_until(lambda: len(prod.acked) >= 500 or not prod.is_alive(), timeout=20, what="500 acks")
        time.sleep(0.5)
        w.kill9()
    finally:
        prod.stop_event.set()
        prod.join(timeout=30)
    assert not prod.is_alive(), "producer thread did not finish"
    assert prod.error is None, prod.error
    acked = list(prod.acked)
    assert len(acked) >= 500, f"only {len(acked)} acks before the kill"

    w.restart()
    wait_for_partitions(w.bootstrap, topic, PARTITIONS)
    stored = _read_everything(w.bootstrap, topic)
    _check_acked_present(acked, stored)

    # New records go after the recovered end, nothing is overwritten.
    ends = {p: watermarks(w.bootstrap, topic, p)[1] for p in range(PARTITIONS)}
    d = produce(w.bootstrap, topic, [{"value": b"after-restart", "partition": p} for p in range(PARTITIONS)],
                conf={"acks": "all"})
    assert sorted((x.partition, x.offset) for x in d) == sorted(ends.items())


def test_kill9_twice_in_a_row(weir_factory, topic):
    w = weir_factory(name="weir-kill9x2")
    create_topic(w.bootstrap, topic, partitions=PARTITIONS)
    first = produce(w.bootstrap, topic, [{"value": f"seq-{i}".encode(), "partition": i % PARTITIONS}
                                         for i in range(300)], conf={"acks": "all"})
    w.kill9()
    w.restart()
    w.kill9()
    w.restart()
    wait_for_partitions(w.bootstrap, topic, PARTITIONS)
    stored = _read_everything(w.bootstrap, topic)
    _check_acked_present([(d.partition, d.offset, d.value) for d in first], stored)
    assert len(stored) == 300


def test_clean_stop_and_restart_keeps_everything(weir_factory, topic):
    w = weir_factory(name="weir-clean")
    create_topic(w.bootstrap, topic, partitions=PARTITIONS, config={"retention.ms": "86400000"})
    records = [{"key": f"k{i % 7}".encode(), "value": f"seq-{i}".encode(), "partition": i % PARTITIONS,
                "headers": [("i", str(i).encode())]} for i in range(1000)]
    delivered = produce(w.bootstrap, topic, records, conf={"acks": "all", "compression.type": "lz4"})

    rc = w.stop()
    assert rc != -9, "broker did not exit within 10 s of SIGTERM (it was SIGKILLed)"
    w.restart()
    wait_for_partitions(w.bootstrap, topic, PARTITIONS)

    stored = _read_everything(w.bootstrap, topic)
    assert len(stored) == len(records)
    _check_acked_present([(d.partition, d.offset, d.value) for d in delivered], stored)

    # Topic configs survive too.
    res = ConfigResource(ResourceType.TOPIC, topic)
    a = admin(w.bootstrap)  # keep the client alive until the future resolves
    cfg = a.describe_configs([res])[res].result(timeout=30)
    assert cfg["retention.ms"].value == "86400000"


@pytest.mark.slow
def test_repeated_kill9_under_load(weir_factory, topic):
    """Five rounds of: produce steadily, kill -9 mid-stream, restart. Every record
    acknowledged in any round must still be there after the last restart."""
    w = weir_factory(name="weir-kill9-rounds")
    create_topic(w.bootstrap, topic, partitions=PARTITIONS)
    acked: list[tuple[int, int, bytes]] = []
    for round_no in range(5):
        prod = SteadyProducer(w.bootstrap, topic, max_seconds=15)
        prod.start()
        try:
            wait_until(lambda: len(prod.acked) >= 2000 or not prod.is_alive(), timeout=30,
                       what=f"2000 acks in round {round_no}")
            w.kill9()
        finally:
            prod.stop_event.set()
            prod.join(timeout=30)
        assert prod.error is None, prod.error
        acked += prod.acked
        w.restart()
        wait_for_partitions(w.bootstrap, topic, PARTITIONS)
    stored = _read_everything(w.bootstrap, topic)
    # Sequence numbers restart each round, so check presence and offsets, not global order.
    missing = [(p, o, v) for (p, o, v) in acked if stored.get((p, o)) != v]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost or changed, e.g. {missing[:5]}"
