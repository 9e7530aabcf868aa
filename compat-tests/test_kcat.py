"""kcat (Debian: kcat 1.7.1, librdkafka 2.0.2) against weir."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from lib.clients import create_topic, run, unique_topic, wait_until

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (scripts/install-test-deps.sh)")

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def kcat(weir, *args, input=None, timeout=60):
    return run(["kcat", "-b", weir.bootstrap, "-X", "broker.address.family=v4", *args],
               input=input, timeout=timeout)


def consume_lines(weir, topic, fmt, expected, partition=None):
    """Consumes from the beginning to the end of the partition(s); retries until `expected` lines."""
    args = ["-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", fmt]
    if partition is not None:
        args += ["-p", str(partition)]

    def read():
        out = kcat(weir, *args).stdout
        lines = [line for line in out.split("\n") if line]
        return lines if len(lines) >= expected else None

    return wait_until(read, timeout=30, what=f"{expected} records in {topic}")


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_roundtrip(weir, topic, codec):
    create_topic(weir.bootstrap, topic, partitions=1)
    n = 200
    # Compressible values, so the codec really has something to do.
    records = [(f"key{i % 7}", f"value-{i}-" + "abcdefgh" * 20) for i in range(n)]
    stdin = "".join(f"{k}:{v}\n" for k, v in records)
    before = int(time.time() * 1000) - 1000
    kcat(weir, "-P", "-t", topic, "-z", codec, "-K:", "-H", "hk=hv", "-H", "trace=abc123",
         "-X", "linger.ms=50", input=stdin)
    after = int(time.time() * 1000) + 1000

    lines = consume_lines(weir, topic, "%k|%s|%h|%T|%o\n", n)
    assert len(lines) == n, f"got {len(lines)} records, expected {n}"
    for i, line in enumerate(lines):
        key, value, headers, ts, offset = line.split("|")
        assert (key, value) == records[i], f"record {i} differs"
        assert headers == "hk=hv,trace=abc123"
        assert before <= int(ts) <= after, f"timestamp {ts} not within [{before}, {after}]"
        assert int(offset) == i


def test_consume_json(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=1)
    kcat(weir, "-P", "-t", topic, "-K:", "-H", "a=1", input="k1:hello\nk2:world\n")

    def read():
        out = kcat(weir, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J").stdout
        msgs = [json.loads(line) for line in out.split("\n") if line.strip()]
        return msgs if len(msgs) >= 2 else None

    msgs = wait_until(read, timeout=30, what="2 JSON records")
    assert [(m["key"], m["payload"]) for m in msgs] == [("k1", "hello"), ("k2", "world")]
    assert [m["offset"] for m in msgs] == [0, 1]
    assert all(m["partition"] == 0 for m in msgs)
    assert msgs[0]["headers"] == ["a", "1"]


def test_metadata_listing(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=3)
    md = json.loads(kcat(weir, "-L", "-J").stdout)
    brokers = md["brokers"]
    assert [b["id"] for b in brokers] == [1]
    assert brokers[0]["name"] == weir.bootstrap
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics
    t = topics[topic]
    assert "error" not in t or not t["error"]
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
    for p in t["partitions"]:
        assert p["leader"] == 1
        assert [r["id"] for r in p["replicas"]] == [1]
        assert [r["id"] for r in p["isrs"]] == [1]

    # Plain-text listing of just this topic.
    out = kcat(weir, "-L", "-t", topic).stdout
    assert f'topic "{topic}" with 3 partitions' in out


def test_auto_created_topic(weir):
    topic = unique_topic("kcat-auto")
    kcat(weir, "-P", "-t", topic, input="one\ntwo\nthree\n")
    lines = consume_lines(weir, topic, "%s\n", 3)
    assert lines == ["one", "two", "three"]
    md = json.loads(kcat(weir, "-L", "-J", "-t", topic).stdout)
    (t,) = [t for t in md["topics"] if t["topic"] == topic]
    assert len(t["partitions"]) == 1  # num.partitions default


def test_keyed_records_stay_in_order_per_partition(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=4)
    n = 400
    stdin = "".join(f"k{i % 10}:{i}\n" for i in range(n))
    kcat(weir, "-P", "-t", topic, "-K:", "-z", "lz4", input=stdin)
    lines = consume_lines(weir, topic, "%p|%k|%s\n", n)
    assert len(lines) == n
    part_of_key: dict[str, int] = {}
    seen_per_key: dict[str, list[int]] = {}
    for line in lines:
        p, k, v = line.split("|")
        assert part_of_key.setdefault(k, int(p)) == int(p), f"key {k} in two partitions"
        seen_per_key.setdefault(k, []).append(int(v))
    for k, vals in seen_per_key.items():
        assert vals == sorted(vals), f"key {k} out of order"
        assert len(vals) == n // 10
