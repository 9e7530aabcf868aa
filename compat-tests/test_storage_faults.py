"""A failing disk under a running broker loses nothing acknowledged (issue 9, scope 7).

The broker runs with `WEIR_STORAGE_FAULTS` (a test hook of the storage crate's
file-system layer) arming a fault that fires only while a switch file exists.
confluent-kafka producers write acks=all, idempotent records; then the switch is
flipped and the disk "fails" under a second producer: the writes get
ENOSPC, an fsync gets EIO, or a new segment cannot be opened (EMFILE). As Kafka
with its only log dir failed, the broker takes the dir offline and stops with a
non-zero exit, writing nothing more into it. Restarted on a healthy disk, it
serves every acknowledged record at its offset, in a log without holes.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from lib.clients import client_conf, consume_assigned, create_topic, produce, watermarks
from lib.weir import Weir

PARTITIONS = 2
BEFORE = 300
DURING = 200
FAILED_LOG_LINE = "Shutdown broker because all log dirs in"

CASES = {
    # Every write fails, as on a full disk.
    "write-enospc": ("op=write,errno=ENOSPC,persistent", {}),
    # One fsync fails (flush.messages=1: every append is fsynced).
    "fsync-eio": ("op=sync,errno=EIO", {"flush.messages": "1"}),
    # No new file can be opened: the next segment roll fails.
    "open-emfile": ("op=open,errno=EMFILE,persistent", {"segment.bytes": "16384"}),
}


def _records(start: int, count: int) -> list[dict]:
    return [{"key": f"k{i}".encode(), "value": f"value-{i}-{'x' * 200}".encode(), "partition": i % PARTITIONS}
            for i in range(start, start + count)]


def _produce_while_failing(bootstrap: str, topic: str) -> list[tuple[int, int, bytes]]:
    """Produces DURING records while the disk fails; returns the acknowledged ones."""
    acked: list[tuple[int, int, bytes]] = []
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value()))
        else:
            errors.append(str(err))

    p = Producer(client_conf(bootstrap, **{"acks": "all", "enable.idempotence": True, "linger.ms": 5,
                                           "message.timeout.ms": 10000, "retry.backoff.ms": 200}))
    for r in _records(BEFORE, DURING):
        p.produce(topic, key=r["key"], value=r["value"], partition=r["partition"], on_delivery=on_delivery)
        p.poll(0)
        time.sleep(0.002)
    p.flush(30)
    assert errors, "no produce failed although the disk did"
    return acked


@pytest.mark.parametrize("case", list(CASES))
def test_failing_disk_stops_the_broker_and_loses_nothing_acknowledged(tmp_path, case):
    spec, topic_config = CASES[case]
    switch = tmp_path / "disk-fails"
    w = Weir(name=f"weir-faults-{case}")
    w.env["WEIR_STORAGE_FAULTS"] = f"{spec},under={w.data_dir},when={switch}"
    try:
        w.start()
        topic = f"faults-{case}"
        create_topic(w.bootstrap, topic, partitions=PARTITIONS, config=topic_config)
        delivered = produce(w.bootstrap, topic, _records(0, BEFORE),
                            conf={"acks": "all", "enable.idempotence": True})
        acked = [(d.partition, d.offset, d.value) for d in delivered]

        switch.touch()
        acked += _produce_while_failing(w.bootstrap, topic)

        # The broker stops by itself, with an error, once the log dir failed.
        deadline = time.monotonic() + 40
        while w.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not w.alive(), "the broker kept running on a failed log dir\n" + w.tail()
        assert w.proc.returncode not in (0, None), w.tail()
        log = w.log_path.read_text(errors="replace")
        assert FAILED_LOG_LINE in log, w.tail()
        assert "panicked" not in log, w.tail()

        # A healthy disk again: everything acknowledged is there, without holes.
        switch.unlink()
        w.start()
        by_partition: dict[int, dict[int, bytes]] = {p: {} for p in range(PARTITIONS)}
        for partition, offset, value in acked:
            by_partition[partition][offset] = value
        for partition, expected in by_partition.items():
            low, high = watermarks(w.bootstrap, topic, partition)
            assert low == 0 and high > max(expected), f"partition {partition}: watermarks {low}, {high}"
            # Records past the last acknowledged one may be there too (written, never acknowledged).
            got = consume_assigned(w.bootstrap, topic, [partition], high, timeout=60)
            assert [m.offset() for m in got] == list(range(high)), f"partition {partition}: hole in the log"
            stored = {m.offset(): m.value() for m in got}
            lost = [o for o, v in expected.items() if stored.get(o) != v]
            assert not lost, f"partition {partition}: acknowledged offsets lost or changed: {lost[:10]}"
        # And it takes writes again.
        produce(w.bootstrap, topic, _records(BEFORE + DURING, 10), conf={"acks": "all"})
    finally:
        w.cleanup()
