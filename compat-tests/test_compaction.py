"""Log compaction end to end with real clients. Apache Kafka's Java console producer writes
rounds of keyed values and tombstones (idempotent and plain producers) with each codec to a
`cleanup.policy=compact` topic; snappy matters most, since the Java client writes it in xerial
framing, in several 32 KiB blocks here. Once weir's cleaner has run, confluent-kafka and the
Java console consumer (CRC checks on) read exactly the latest value per key, in offset order at
its original offset (gaps), with its original timestamp; tombstones are read until
`delete.retention.ms` has passed and not after; a batch the cleaner empties does not trip the
readers. On disk, every batch still holding records keeps the producer's codec, and some were
decompressed, cut down and recompressed by weir. The compacted log reads the same after kill -9
and a restart. Without a cleaning (log.cleaner.enable=false) the first wait fails."""

from __future__ import annotations

import hashlib
import struct
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from lib import wire
from lib.clients import (
    JAVA_ENV,
    client_conf,
    create_topic,
    java_available,
    java_tool,
    run,
    wait_for_partitions,
    wait_until,
    watermarks,
)

pytestmark = [
    pytest.mark.java,
    pytest.mark.skipif(not java_available(), reason="java not on PATH (../shared/kafka-tools/install-deps.sh installs it)"),
]

DELETE_RETENTION_MS = 2000
# The cleaner looks every 100 ms (housekeeping ticks every log.flush.scheduler.interval.ms, >= 100).
FAST_CLEANER = {"log.cleaner.backoff.ms": 100, "log.flush.scheduler.interval.ms": 100}
# segment.bytes=100: every producer request (one batch) rolls a new segment, so everything
# but the last round is cleanable; any dirty byte makes the log dirty enough (round 1 is big).
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.bytes": "100",
    "min.cleanable.dirty.ratio": "0",
    "delete.retention.ms": str(DELETE_RETENTION_MS),
}
CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

# One console-producer run (one batch) per round: (idempotent producer?, [(key, value)]), None is a
# tombstone. Round 1's values are large and incompressible enough for several 32 KiB snappy blocks
# (xerial framing) before and after cleaning; idempotent batches keep their offset range when
# cut down, the others shrink to the records they keep.
KEYS = [f"k{i:02}" for i in range(12)]


def _payload(key: str, size: int = 12_000) -> str:
    out, h = "", key.encode()
    while len(out) < size:
        h = hashlib.sha256(h).digest()
        out += h.hex()
    return out[:size]


ROUNDS = [
    (True, [(k, f"r1-{k}-{_payload(k)}") for k in KEYS]),
    (True, [(k, f"r2-{k}") for k in KEYS[:3]]),  # wholly superseded by the next round: an emptied batch
    (False, [(k, f"r3-{k}") for k in KEYS[:6]] + [("k06", None), ("k07", None)]),
    # Rolls round 3's segment: its cleaning stamps the tombstones' delete horizon, and no other
    # cleaning happens until new data comes, so they are still there to be read.
    (False, [("k07", "r4-k07")]),  # k07 is back after its tombstone
]
# Written after the tombstones' delete horizon: rolls the last round's segment, so it is cleaned.
LAST_ROUND = (True, [("after-horizon", "r5")])
# After kill -9 and a restart: a newer k08, then a round that makes it cleanable.
AFTER_RESTART = [(True, [("k08", "r6-k08")]), (True, [("after-restart", "r7")])]

Record = tuple[int, str, "str | None"]  # (offset, key, value)


def java_produce(bootstrap: str, topic: str, codec: str, round_, sent: list, sent_between: dict) -> None:
    """Writes one round with the Java console producer and appends its records to `sent`
    (one partition, one producer: offsets follow the order of the lines); `sent_between`
    gets each offset's wall-clock window (ms), which holds the record's CreateTime."""
    idempotent, records = round_
    started = time.time() * 1000
    lines = "".join(f"{k}:{'NULL' if v is None else v}\n" for k, v in records)
    # --compression-codec, not --producer-property compression.type: the console producer
    # overwrites compression.type with its own option (default none).
    run([str(java_tool("kafka-console-producer")), "--bootstrap-server", bootstrap, "--topic", topic,
         "--compression-codec", codec,
         # The whole round in one batch: long linger, batches up to 1 MiB.
         "--timeout", "10000", "--batch-size", str(1 << 20),
         "--producer-property", f"enable.idempotence={str(idempotent).lower()}",
         "--property", "parse.key=true", "--property", "key.separator=:", "--property", "null.marker=NULL"],
        input=lines, timeout=60, env=JAVA_ENV)
    sent_between.update({len(sent) + i: (started, time.time() * 1000) for i in range(len(records))})
    sent += [(len(sent) + i, k, v) for i, (k, v) in enumerate(records)]


def java_consume(bootstrap: str, topic: str, n: int) -> list[str]:
    """The first n records of partition 0 as the Java console consumer prints them
    (`Offset:<o>:<key>:<value>`, a null value as NULL)."""
    p = run([str(java_tool("kafka-console-consumer")), "--bootstrap-server", bootstrap, "--topic", topic,
             "--partition", "0", "--offset", "earliest", "--max-messages", str(n), "--timeout-ms", "20000",
             "--property", "print.key=true", "--property", "print.offset=true",
             "--property", "key.separator=:", "--property", "null.literal=NULL"],
            timeout=90, env=JAVA_ENV, check=False)
    lines = [line for line in p.stdout.splitlines() if line.startswith("Offset:")]
    assert len(lines) == n, f"Java consumer printed {len(lines)} of {n} records\nstderr:\n{p.stderr[-3000:]}"
    return lines


def as_java_lines(records: list[Record]) -> list[str]:
    return [f"Offset:{o}:{k}:{'NULL' if v is None else v}" for o, k, v in records]


def read_log(bootstrap: str, topic: str, timeout: float = 15.0) -> tuple[list[Record], dict[int, int]]:
    """Every record of partition 0 from the log start to the high watermark (confluent-kafka),
    and each record's timestamp by offset."""
    low, high = watermarks(bootstrap, topic, 0)
    assert low == 0, f"log start moved to {low}: compaction never moves it"
    c = Consumer(client_conf(bootstrap, **{"group.id": f"compaction-read-{topic}", "enable.auto.commit": False,
                                           "enable.partition.eof": False}))
    out: list[Record] = []
    timestamps: dict[int, int] = {}
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while (not out or out[-1][0] < high - 1) and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    raise AssertionError(f"consumer error: {m.error()}")
                v = m.value()
                out.append((m.offset(), m.key().decode(), None if v is None else v.decode()))
                timestamps[m.offset()] = m.timestamp()[1]
    finally:
        c.close()
    assert out and out[-1][0] == high - 1, f"read up to {out[-1][0] if out else None}, high watermark {high}"
    return out, timestamps


def compacted(sent: list[Record], clean_below: int, drop_tombstones: bool) -> list[Record]:
    """What compaction leaves of `sent`: below `clean_below` (the active segment's base) a record
    stays only if it is its key's latest there, a tombstone only before its delete horizon."""
    latest = {k: o for o, k, _ in sent if o < clean_below}
    return [(o, k, v) for o, k, v in sent
            if o >= clean_below or (latest[k] == o and not (drop_tombstones and v is None))]


def wait_compacted(bootstrap: str, topic: str, want: list[Record], timeout: float = 30.0) -> dict[int, int]:
    """Polls until a consumer reads exactly `want`; returns the records' timestamps."""
    def short(records):
        return sorted((o, k, v if v is None else v[:24]) for o, k, v in records)[:8]

    def reads_compacted():
        got, timestamps = read_log(bootstrap, topic)
        assert got == want, (f"consumer reads {len(got)} records, want {len(want)}; "
                             f"unexpected {short(set(got) - set(want))}, missing {short(set(want) - set(got))}")
        return timestamps

    return wait_until(reads_compacted, timeout=timeout, interval=0.3, what="the consumer to read the compacted log")


def batches_on_disk(partition_dir: Path) -> list[tuple[int, int, int, int, bool]]:
    """(base offset, last offset, records count, codec, CRC valid) of every batch in the segments."""
    out = []
    for seg in sorted(partition_dir.glob("*.log")):
        data = seg.read_bytes()
        pos = 0
        while pos + 61 <= len(data):
            base, length = struct.unpack_from(">qi", data, pos)
            (crc,) = struct.unpack_from(">I", data, pos + 17)
            attributes, last_delta = struct.unpack_from(">hi", data, pos + 21)
            (count,) = struct.unpack_from(">i", data, pos + 57)
            end = pos + 12 + length
            out.append((base, base + last_delta, count, attributes & 0x07, wire.crc32c(data[pos + 21:end]) == crc))
            pos = end
        assert pos == len(data), f"{seg}: {len(data) - pos} bytes after the last whole batch"
    return out


@pytest.mark.timeout(150)
@pytest.mark.parametrize("codec", ["snappy", "lz4", "gzip", "zstd"])
def test_java_producer_compacted_topic_reads_latest_per_key(weir_factory, topic, codec):
    w = weir_factory(FAST_CLEANER, name=f"weir-compact-{codec}")
    create_topic(w.bootstrap, topic, config=COMPACTED)

    sent: list[Record] = []
    sent_between: dict[int, tuple[float, float]] = {}
    for round_ in ROUNDS:
        java_produce(w.bootstrap, topic, codec, round_, sent, sent_between)
    assert watermarks(w.bootstrap, topic, 0) == (0, len(sent)), "one offset per record sent"

    # Everything below the last round is compacted; the tombstones are still there, stamped with
    # their delete horizon by the cleaning that emptied round 2 (before this read).
    last_base = len(sent) - len(ROUNDS[-1][1])
    before_horizon = compacted(sent, last_base, drop_tombstones=False)
    assert len(before_horizon) < len(sent) and any(v is None for _, _, v in before_horizon)
    timestamps = wait_compacted(w.bootstrap, topic, before_horizon)
    horizon_passed_at = time.monotonic() + DELETE_RETENTION_MS / 1000 + 0.5
    assert java_consume(w.bootstrap, topic, len(before_horizon)) == as_java_lines(before_horizon)

    # After delete.retention.ms a cleaning drops the tombstones (new data makes the log dirty).
    time.sleep(max(0.0, horizon_passed_at - time.monotonic()))
    java_produce(w.bootstrap, topic, codec, LAST_ROUND, sent, sent_between)
    final = compacted(sent, len(sent) - len(LAST_ROUND[1]), drop_tombstones=True)
    assert {k for _, k, _ in final} == set(KEYS) - {"k06"} | {"after-horizon"}
    offsets = [o for o, _, _ in final]
    assert offsets != list(range(offsets[0], offsets[0] + len(offsets))), "offsets keep their gaps"
    final_timestamps = wait_compacted(w.bootstrap, topic, final)
    # Record timestamps (the producer's CreateTime) survive every rewrite, delete horizons included.
    for o, t in {**timestamps, **final_timestamps}.items():
        lo, hi = sent_between[o]
        assert lo - 5 <= t <= hi + 5, f"offset {o}: timestamp {t} outside its send window {lo:.0f}..{hi:.0f}"
    assert {o: t for o, t in final_timestamps.items() if o in timestamps} == \
        {o: t for o, t in timestamps.items() if o in final_timestamps}
    assert java_consume(w.bootstrap, topic, len(final)) == as_java_lines(final)

    # kill -9, then the segments as the cleaner left them: every batch whole, every batch
    # with records still in the producer's codec, some of them cut down by the cleaner.
    w.kill9()
    batches = batches_on_disk(w.data_dir / f"{topic}-0")
    assert all(ok for *_, ok in batches), f"bad CRC: {batches}"
    assert sum(count for _, _, count, _, _ in batches) == len(final)
    assert all(c == CODECS[codec] for _, _, count, c, _ in batches if count > 0), f"codec lost: {batches}"
    assert any(0 < count < last - base + 1 for base, last, count, _, _ in batches), \
        f"no compressed batch was rewritten: {batches}"

    w.restart()
    wait_for_partitions(w.bootstrap, topic, 1)
    assert read_log(w.bootstrap, topic) == (final, final_timestamps)
    assert java_consume(w.bootstrap, topic, len(final)) == as_java_lines(final)

    # The cleaner carries on after the restart: a newer k08 makes round 1's batch (already
    # recompressed once) lose another record.
    for round_ in AFTER_RESTART:
        java_produce(w.bootstrap, topic, codec, round_, sent, sent_between)
    again = compacted(sent, len(sent) - len(AFTER_RESTART[-1][1]), drop_tombstones=True)
    assert [v for _, k, v in again if k == "k08"] == ["r6-k08"]
    wait_compacted(w.bootstrap, topic, again)
    assert java_consume(w.bootstrap, topic, len(again)) == as_java_lines(again)
