"""Poison-pill batches: CRC-valid record batches whose records no consumer can read.

Each is sent by hand (Produce v7, raw bytes) between records written by a real producer.
Weir must refuse every one with INVALID_RECORD and store nothing of it, so that
confluent-kafka, kcat and the Java console consumer read the partition end to end
(issue 9, defect 2). Before the fix each was acknowledged with error 0 and broke every
consumer of the partition. A compacted topic gets the 74-byte record that declares
2^31-1 headers, which used to commit ~4 GiB (defect 3): the broker's peak RSS stays small.
"""

from __future__ import annotations

import gzip

import pytest

from lib import wire
from lib.clients import (JAVA_ENV, client_conf, consume_assigned, create_topic, java_available, java_tool, produce,
                         run)
from lib.weir import HOST


def body(key: bytes | None = b"k", value: bytes = b"v", offset_delta: int = 0, key_length: int | None = None,
         header_count: int = 0, headers: bytes = b"") -> bytes:
    """A record body (everything after the length prefix), with fields that may lie."""
    out = wire.i8(0) + wire.varint(0) + wire.varint(offset_delta)
    if key_length is not None:
        out += wire.varint(key_length)
    elif key is None:
        out += wire.varint(-1)
    else:
        out += wire.varint(len(key)) + key
    return out + wire.varint(len(value)) + value + wire.varint(header_count) + headers


def rec(b: bytes, length: int | None = None) -> bytes:
    return wire.varint(len(b) if length is None else length) + b


def good_section(n: int = 2) -> bytes:
    return b"".join(rec(body(offset_delta=i)) for i in range(n))


def zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


# (name, records section, record count in the header, attributes)
POISON = [
    *[(f"compression type {c}", good_section(), 2, c) for c in (5, 6, 7)],
    *[(f"codec {c} flag on an uncompressed payload", good_section(), 2, c) for c in (1, 2, 3, 4)],
    ("record length 2^40", wire.varint(1 << 40) + body(), 1, 0),
    ("record length past the batch", rec(body(), length=1000), 1, 0),
    ("negative key length", rec(body(key_length=-5)), 1, 0),
    ("trailing bytes after the last record", good_section() + b"\x01\x02\x03", 2, 0),
    ("a header count of 10^6", rec(body(header_count=10**6, headers=wire.varint(1) + b"h" + wire.varint(0))), 1, 0),
    ("a header count of 2^31-1", rec(body(header_count=2**31 - 1)), 1, 0),
    ("a negative header count", rec(body(header_count=-3)), 1, 0),
    ("more records counted than present", good_section(2), 3, 0),
    ("offset deltas out of order", rec(body(offset_delta=0)) + rec(body(offset_delta=5)), 2, 0),
    ("gzip records with a negative key length", gzip.compress(rec(body(key_length=-5))), 1, 1),
    ("zstd records with trailing bytes", zstd(good_section() + b"\x00"), 2, 4),
]


@pytest.mark.parametrize("compacted", [False, True], ids=["delete", "compact"])
def test_poison_batches_are_refused_and_every_consumer_reads_past_them(weir, topic, compacted):
    config = {"cleanup.policy": "compact"} if compacted else None
    create_topic(weir.bootstrap, topic, partitions=1, config=config)
    before = [{"key": f"k{i}".encode(), "value": f"before-{i}".encode()} for i in range(5)]
    produce(weir.bootstrap, topic, before, conf={"acks": "all"})

    with wire.Conn(HOST, weir.port) as c:
        for name, section, count, attributes in POISON:
            res = wire.produce_v7(c, topic, 0, wire.raw_batch(section, count, attributes=attributes))
            assert res.error_code == wire.INVALID_RECORD, f"{name}: answered error {res.error_code}, offset {res.base_offset}"
            assert wire.list_offsets_v1(c, topic, 0, wire.LATEST) == (0, 5), f"{name}: something was stored"
        # The same records framed correctly are taken, in every codec the test can build.
        for attributes, section in ((0, good_section()), (1, gzip.compress(good_section())), (4, zstd(good_section()))):
            res = wire.produce_v7(c, topic, 0, wire.raw_batch(section, 2, attributes=attributes))
            assert res.error_code == 0, f"a good batch with codec {attributes} was refused: {res.error_code}"

    after = [{"key": f"k{i}".encode(), "value": f"after-{i}".encode()} for i in range(5)]
    produce(weir.bootstrap, topic, after, conf={"acks": "all"})
    expected = [r["value"] for r in before] + [b"v"] * 6 + [r["value"] for r in after]

    got = consume_assigned(weir.bootstrap, topic, [0], expected=len(expected))
    assert [m.value() for m in got] == expected
    assert [m.offset() for m in got] == list(range(len(expected)))

    out = run(["kcat", "-C", "-b", weir.bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
               "-f", "%o %s\\n"], timeout=60)
    assert out.stdout.split("\n")[:-1] == [f"{i} {v.decode()}" for i, v in enumerate(expected)]

    if java_available():
        console = run([str(java_tool("kafka-console-consumer")), "--bootstrap-server", weir.bootstrap,
                       "--topic", topic, "--partition", "0", "--offset", "earliest",
                       "--max-messages", str(len(expected)), "--timeout-ms", "30000"],
                      timeout=120, env=JAVA_ENV, check=False)
        lines = [line for line in console.stdout.splitlines() if line]
        assert lines == [v.decode() for v in expected], console.stderr[-2000:]


def test_a_record_declaring_two_billion_headers_costs_no_memory(weir_factory):
    w = weir_factory()
    topic = "compacted-headers"
    create_topic(w.bootstrap, topic, partitions=1, config={"cleanup.policy": "compact"})
    batch = wire.raw_batch(rec(body(header_count=2**31 - 1)), 1)
    with wire.Conn(HOST, w.port) as c:
        for _ in range(20):
            res = wire.produce_v7(c, topic, 0, batch)
            assert res.error_code == wire.INVALID_RECORD, res
        assert wire.list_offsets_v1(c, topic, 0, wire.LATEST) == (0, 0)
    peak = w.status_kib("VmHWM")
    # A healthy broker peaks in the tens of MiB; the defect took it to 4 GiB on the first batch.
    assert peak < 200 * 1024, f"peak RSS {peak} KiB"


def test_clients_cannot_produce_to_internal_topics(weir, topic):
    # The group coordinator creates __consumer_offsets on first use; a group commit makes it exist.
    create_topic(weir.bootstrap, topic, partitions=1)
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(client_conf(weir.bootstrap, **{"group.id": f"g-{topic}", "enable.auto.commit": False}))
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        c.close()
    with wire.Conn(HOST, weir.port) as conn:
        for internal in ("__consumer_offsets", "__transaction_state"):
            for partition in (0, 1):
                res = wire.produce_v7(conn, internal, partition, wire.record_batch([(b"forged", b"value")]))
                assert res.error_code == wire.INVALID_TOPIC_EXCEPTION, (internal, partition, res)
        for partition in range(50):
            assert wire.list_offsets_v1(conn, "__consumer_offsets", partition, wire.LATEST)[0] == 0
    # kcat as a client sees the same refusal.
    out = run(["kcat", "-P", "-b", weir.bootstrap, "-t", "__consumer_offsets", "-p", "0"], input=b"forged\n",
              timeout=60, check=False)
    assert out.returncode != 0 or b"nvalid" in out.stderr, out.stderr

