"""kafka-python (pure Python client, 2.x) against weir: producer per codec, assign-mode
consumer without a group, admin create/list/delete."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from lib.clients import wait_until

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


def _admin(weir) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=weir.bootstrap, client_id="weir-compat-kp",
                            request_timeout_ms=30000)


def _create(weir, topic, partitions):
    a = _admin(weir)
    try:
        a.create_topics([NewTopic(name=topic, num_partitions=partitions, replication_factor=1)],
                        timeout_ms=30000)
        wait_until(lambda: topic in a.list_topics(), what=f"{topic} listed")
    finally:
        a.close()


def _consume(weir, topic, partitions, expected, timeout=30.0):
    c = KafkaConsumer(bootstrap_servers=weir.bootstrap, group_id=None, enable_auto_commit=False,
                      client_id="weir-compat-kp-consumer")
    try:
        c.assign([TopicPartition(topic, p) for p in partitions])
        c.seek_to_beginning()
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for _tp, msgs in c.poll(timeout_ms=500).items():
                out.extend(msgs)
        assert len(out) == expected, f"consumed {len(out)} of {expected}"
        return out
    finally:
        c.close()


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c or "none")
def test_produce_consume(weir, topic, codec):
    _create(weir, topic, 3)
    p = KafkaProducer(bootstrap_servers=weir.bootstrap, compression_type=codec, acks="all",
                      linger_ms=5, client_id="weir-compat-kp-producer")
    n = 300
    base_ts = int(time.time() * 1000) - 60_000
    futures = []
    try:
        for i in range(n):
            futures.append(p.send(topic, key=f"k{i % 11}".encode(), value=f"v{i}".encode() * 20,
                                  headers=[("idx", str(i).encode())], timestamp_ms=base_ts + i))
        p.flush(timeout=60)
        metas = [f.get(timeout=30) for f in futures]
    finally:
        p.close(timeout=10)

    part_of_key = {}
    for i, m in enumerate(metas):
        assert part_of_key.setdefault(f"k{i % 11}", m.partition) == m.partition

    msgs = _consume(weir, topic, range(3), n)
    last = {}
    seen = set()
    for m in msgs:
        i = int(dict(m.headers)["idx"])
        assert m.key == f"k{i % 11}".encode()
        assert m.value == f"v{i}".encode() * 20
        assert m.timestamp == base_ts + i
        assert (m.partition, m.offset) == (metas[i].partition, metas[i].offset)
        assert last.get(m.key, -1) < i, "out of order within a key"
        last[m.key] = i
        seen.add(i)
    assert seen == set(range(n))


def test_admin_create_list_delete(weir, topic):
    a = _admin(weir)
    try:
        a.create_topics([NewTopic(name=topic, num_partitions=4, replication_factor=1)], timeout_ms=30000)
        wait_until(lambda: topic in a.list_topics(), what=f"{topic} listed")
        (desc,) = a.describe_topics([topic])
        assert desc["error_code"] == 0
        assert sorted(p["partition"] for p in desc["partitions"]) == [0, 1, 2, 3]
        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=1)], timeout_ms=30000)
        a.delete_topics([topic], timeout_ms=30000)
        wait_until(lambda: topic not in a.list_topics(), what=f"{topic} deleted")
    finally:
        a.close()
