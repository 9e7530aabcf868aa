"""Recovery point: after kill -9, a restart rescans only the data above each
log's recovery point (Kafka's `recovery-point-offset-checkpoint` at the log dir
root), and every acknowledged record is still there. A garbled checkpoint makes
the restart rescan everything, losing nothing. A broker of its own.

The restart is judged by the line Weir logs per recovered partition
("recovered log after an unclean shutdown ... segments_scanned=.. bytes_scanned=.."),
never by wall time."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from lib.clients import consume_assigned, create_topic, produce, wait_for_partitions, wait_until, watermarks

PARTITIONS = 3
SEGMENT_BYTES = 4 * 1024 * 1024
VALUE_BYTES = 200 * 1024
RECORDS = 600  # ~120 MB over 3 partitions, ~10 segments each
CHECKPOINT = "recovery-point-offset-checkpoint"

RECOVERED = re.compile(
    r"recovered log after an unclean shutdown.*?dir=(?P<dir>\S+).*?recovery_point=(?P<rp>-?\d+)"
    r".*?segments_scanned=(?P<scanned>\d+)"
    r".*?segments_total=(?P<total>\d+).*?bytes_scanned=(?P<bytes>\d+)"
)


def _value(i: int) -> bytes:
    # Incompressible enough and distinct per record, cheap to rebuild for the check.
    seed = hashlib.sha256(str(i).encode()).digest()
    return (seed * (VALUE_BYTES // len(seed) + 1))[:VALUE_BYTES]


def _produce(bootstrap: str, topic: str, first: int, count: int) -> list[tuple[int, int, str]]:
    records = [{"value": _value(i), "partition": i % PARTITIONS} for i in range(first, first + count)]
    delivered = produce(bootstrap, topic, records, timeout=120,
                        conf={"acks": "all", "linger.ms": 5, "batch.size": 1_000_000})
    assert len(delivered) == count
    return [(d.partition, d.offset, hashlib.sha256(d.value).hexdigest()) for d in delivered]


def _checkpoint(data_dir: Path) -> dict[tuple[str, int], int]:
    try:
        lines = (data_dir / CHECKPOINT).read_text().splitlines()
    except FileNotFoundError:
        return {}
    out = {}
    for line in lines[2:]:
        fields = line.split(" ")
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            out[(fields[0], int(fields[1]))] = int(fields[2])
    return out


def _active_base(data_dir: Path, topic: str, part: int) -> int:
    return max(int(f.stem) for f in (data_dir / f"{topic}-{part}").glob("*.log"))


def _recovery_lines(log_path: Path, topic: str) -> dict[int, dict[str, int]]:
    """The recovery lines of this topic's partitions logged since the last start."""
    text = log_path.read_text(errors="replace")
    last_start = text.rsplit("===== start #", 1)[-1]
    out = {}
    for m in RECOVERED.finditer(last_start):
        name = Path(m["dir"]).name
        if name.rsplit("-", 1)[0] == topic:
            out[int(name.rsplit("-", 1)[1])] = {k: int(m[k]) for k in ("rp", "scanned", "total", "bytes")}
    return out


def _check_all_present(bootstrap: str, topic: str, acked: list[tuple[int, int, str]]) -> None:
    stored = {}
    for part in range(PARTITIONS):
        low, high = watermarks(bootstrap, topic, part)
        assert low == 0
        for m in consume_assigned(bootstrap, topic, [part], high, timeout=90):
            stored[(m.partition(), m.offset())] = hashlib.sha256(m.value()).hexdigest()
        assert sorted(o for (p, o) in stored if p == part) == list(range(high)), f"gaps in partition {part}"
    missing = [(p, o) for (p, o, h) in acked if stored.get((p, o)) != h]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost or changed, e.g. {missing[:5]}"


def test_kill9_recovers_only_above_the_recovery_point(weir_factory, topic):
    w = weir_factory({"log.flush.offset.checkpoint.interval.ms": 200, "log.flush.scheduler.interval.ms": 100},
                     name="weir-recovery-point")
    create_topic(w.bootstrap, topic, partitions=PARTITIONS, config={"segment.bytes": str(SEGMENT_BYTES)})
    acked = _produce(w.bootstrap, topic, 0, RECORDS)

    # Rolled segments are fsynced in the background and the checkpoint follows: wait until every
    # partition's recovery point has reached its active segment.
    def flushed() -> bool:
        cp = _checkpoint(w.data_dir)
        return all(cp.get((topic, p), -1) >= _active_base(w.data_dir, topic, p) for p in range(PARTITIONS))

    wait_until(flushed, timeout=30, what="recovery points at the active segments in the checkpoint")
    bases = {p: _active_base(w.data_dir, topic, p) for p in range(PARTITIONS)}
    assert all(b > 0 for b in bases.values()), bases
    # A tail above the recovery point that is only in the page cache (it may roll a new segment).
    acked += _produce(w.bootstrap, topic, RECORDS, 2 * PARTITIONS)

    w.kill9()
    w.restart()
    wait_for_partitions(w.bootstrap, topic, PARTITIONS)
    lines = _recovery_lines(w.log_path, topic)
    assert sorted(lines) == list(range(PARTITIONS)), f"one recovery line per partition expected: {lines}"
    for part, stats in lines.items():
        assert stats["total"] >= 8, (part, stats)
        assert stats["rp"] >= bases[part], (part, stats, bases)
        # Only the segment holding the recovery point (the then active one), and the one the tail
        # may have rolled, were rescanned.
        assert 1 <= stats["scanned"] <= 2, (part, stats)
        assert stats["bytes"] <= 2 * SEGMENT_BYTES, (part, stats)
    _check_all_present(w.bootstrap, topic, acked)

    # A garbled checkpoint: everything is rescanned (warned once), nothing is lost.
    w.kill9()
    (w.data_dir / CHECKPOINT).write_bytes(b"0\n7\ngarbage here\n")
    w.restart()
    wait_for_partitions(w.bootstrap, topic, PARTITIONS)
    tail = w.log_path.read_text(errors="replace").rsplit("===== start #", 1)[-1]
    assert tail.count(f"unreadable {CHECKPOINT}") == 1, tail[-3000:]
    lines = _recovery_lines(w.log_path, topic)
    assert sorted(lines) == list(range(PARTITIONS)), lines
    for part, stats in lines.items():
        assert stats["scanned"] == stats["total"] >= 5, (part, stats)
    _check_all_present(w.bootstrap, topic, acked)
    # The broker rewrites a good checkpoint.
    wait_until(lambda: len(_checkpoint(w.data_dir)) >= PARTITIONS, timeout=10, what="a rewritten checkpoint")
