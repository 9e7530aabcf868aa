"""confluent-kafka (librdkafka 2.16) admin, producer and assign-mode consumer against weir."""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from lib.clients import (
    admin,
    client_conf,
    consume_assigned,
    create_topic,
    produce,
    unique_topic,
    wait_for_partitions,
    wait_until,
    watermarks,
)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
TIMEOUT = 30


def _error_code(future) -> int:
    with pytest.raises(KafkaException) as ei:
        future.result(timeout=TIMEOUT)
    return ei.value.args[0].code()


def _src(e: ConfigEntry) -> ConfigSource:
    """ConfigEntry.source arrives as a plain int from the C layer."""
    return ConfigSource(e.source)


def _describe_topic_configs(a, topic) -> dict[str, ConfigEntry]:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)


# ------------------------------------------------------------------ admin


def test_create_list_delete_topic(weir, topic):
    a = admin(weir.bootstrap)
    fs = a.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)], request_timeout=TIMEOUT)
    fs[topic].result(timeout=TIMEOUT)
    wait_for_partitions(weir.bootstrap, topic, 6, a=a)

    md = a.list_topics(timeout=10)
    assert topic in md.topics
    assert sorted(md.topics[topic].partitions) == list(range(6))
    assert set(md.brokers) == {1}
    b = md.brokers[1]
    assert (b.host, b.port) == ("127.0.0.1", weir.port)
    for p in md.topics[topic].partitions.values():
        assert p.leader == 1 and p.replicas == [1] and p.isrs == [1]

    # Creating it again is TOPIC_ALREADY_EXISTS.
    fs = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], request_timeout=TIMEOUT)
    assert _error_code(fs[topic]) == KafkaError.TOPIC_ALREADY_EXISTS

    a.delete_topics([topic], request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    wait_until(lambda: topic not in a.list_topics(timeout=10).topics, what=f"{topic} gone from metadata")

    # The name can be used again, with a different partition count.
    create_topic(weir.bootstrap, topic, partitions=2)
    assert watermarks(weir.bootstrap, topic, 0) == (0, 0)


def test_describe_configs_have_values_and_sources(weir, topic):
    a = admin(weir.bootstrap)
    create_topic(weir.bootstrap, topic, partitions=1, config={"retention.ms": "3600000"})
    configs = _describe_topic_configs(a, topic)
    assert configs, "no topic configs described"
    for name, e in configs.items():
        assert _src(e) != ConfigSource.UNKNOWN_CONFIG, f"{name} has no source"
        if not e.is_sensitive:
            assert e.value is not None, f"{name} has no value"
    # The override.
    assert configs["retention.ms"].value == "3600000"
    assert _src(configs["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert not configs["retention.ms"].is_default
    # Kafka's defaults for the rest.
    defaults = {
        "cleanup.policy": "delete",
        "compression.type": "producer",
        "max.message.bytes": "1048588",
        "segment.bytes": "1073741824",
        "min.insync.replicas": "1",
        "message.timestamp.type": "CreateTime",
        "retention.bytes": "-1",
    }
    for name, value in defaults.items():
        assert name in configs, f"topic config {name} not described"
        assert configs[name].value == value, f"{name}={configs[name].value}, Kafka's default is {value}"
        assert _src(configs[name]) in (ConfigSource.DEFAULT_CONFIG, ConfigSource.STATIC_BROKER_CONFIG,
                                        ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG), name


def test_describe_broker_configs(weir):
    a = admin(weir.bootstrap)
    res = ConfigResource(ResourceType.BROKER, "1")
    configs = a.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    assert configs["num.partitions"].value == "1"
    assert configs["message.max.bytes"].value == "1048588"
    assert configs["auto.create.topics.enable"].value == "true"
    for name, e in configs.items():
        assert _src(e) != ConfigSource.UNKNOWN_CONFIG, f"{name} has no source"


def test_incremental_alter_configs(weir, topic):
    a = admin(weir.bootstrap)
    create_topic(weir.bootstrap, topic, partitions=1)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "12345", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET),
    ])
    a.incremental_alter_configs([res])[res].result(timeout=TIMEOUT)
    configs = _describe_topic_configs(a, topic)
    assert configs["retention.ms"].value == "12345"
    assert _src(configs["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["cleanup.policy"].value == "compact"

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    a.incremental_alter_configs([res])[res].result(timeout=TIMEOUT)
    configs = _describe_topic_configs(a, topic)
    assert configs["retention.ms"].value == "604800000"
    assert _src(configs["retention.ms"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["cleanup.policy"].value == "compact"

    # Unknown config names are rejected.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
    ])
    assert _error_code(a.incremental_alter_configs([res])[res]) == KafkaError.INVALID_CONFIG


def test_create_partitions(weir, topic):
    a = admin(weir.bootstrap)
    create_topic(weir.bootstrap, topic, partitions=6)
    a.create_partitions([NewPartitions(topic, 8)], request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    wait_for_partitions(weir.bootstrap, topic, 8, a=a)
    # The new partitions take records.
    d = produce(weir.bootstrap, topic, [{"value": b"x", "partition": 7}])
    assert (d[0].partition, d[0].offset) == (7, 0)
    # Shrinking is not allowed.
    fs = a.create_partitions([NewPartitions(topic, 3)], request_timeout=TIMEOUT)
    assert _error_code(fs[topic]) == KafkaError.INVALID_PARTITIONS


@pytest.mark.parametrize("name,kwargs,config,expected", [
    ("bad/name", {}, {}, KafkaError.TOPIC_EXCEPTION),
    ("x" * 250, {}, {}, KafkaError.TOPIC_EXCEPTION),
    (None, {"num_partitions": 0}, {}, KafkaError.INVALID_PARTITIONS),
    (None, {"replication_factor": 3}, {}, KafkaError.INVALID_REPLICATION_FACTOR),
    (None, {}, {"no.such.config": "1"}, KafkaError.INVALID_CONFIG),
], ids=["illegal-char", "too-long", "zero-partitions", "rf3-one-broker", "unknown-config"])
def test_create_topic_errors(weir, name, kwargs, config, expected):
    a = admin(weir.bootstrap)
    name = name or unique_topic("bad-create")
    args = {"num_partitions": 1, "replication_factor": 1, **kwargs}
    fs = a.create_topics([NewTopic(name, config=config, **args)], request_timeout=TIMEOUT)
    assert _error_code(fs[name]) == expected
    assert name not in a.list_topics(timeout=10).topics


# ------------------------------------------------------------------ produce / consume


@pytest.mark.parametrize("codec", CODECS)
def test_idempotent_produce_roundtrip(weir, topic, codec):
    create_topic(weir.bootstrap, topic, partitions=3)
    n = 600
    base_ts = int(time.time() * 1000) - 3_600_000
    records = [{
        "key": f"key-{i % 13}".encode(),
        "value": f"value-{i}-".encode() + b"payload" * 30,
        "headers": [("idx", str(i).encode()), ("codec", codec.encode())],
        "timestamp": base_ts + i,
    } for i in range(n)]
    delivered = produce(weir.bootstrap, topic, records, conf={
        "compression.type": codec, "enable.idempotence": True, "acks": "all"})

    # Same key -> same partition; offsets per partition are 0..n-1 in send order.
    part_of_key = {}
    per_partition: dict[int, list[int]] = {}
    for rec, d in zip(records, delivered):
        assert part_of_key.setdefault(rec["key"], d.partition) == d.partition
        per_partition.setdefault(d.partition, []).append(d.offset)
    for p, offs in per_partition.items():
        assert offs == list(range(len(offs))), f"partition {p} offsets {offs[:10]}..."

    msgs = consume_assigned(weir.bootstrap, topic, range(3), n)
    by_idx = {}
    last_idx_per_key: dict[bytes, int] = {}
    for m in msgs:
        headers = dict(m.headers() or [])
        i = int(headers["idx"])
        assert headers["codec"] == codec.encode()
        rec = records[i]
        assert (m.key(), m.value()) == (rec["key"], rec["value"])
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, rec["timestamp"])
        assert (m.partition(), m.offset()) == (delivered[i].partition, delivered[i].offset)
        assert last_idx_per_key.get(m.key(), -1) < i, f"key {m.key()} out of order"
        last_idx_per_key[m.key()] = i
        by_idx[i] = m
    assert sorted(by_idx) == list(range(n))


def test_large_messages(weir, topic):
    size = 1024 * 1024
    create_topic(weir.bootstrap, topic, partitions=1, config={"max.message.bytes": str(2 * size + 1024)})
    values = [os.urandom(size) for _ in range(4)]
    delivered = produce(weir.bootstrap, topic, [{"key": str(i).encode(), "value": v} for i, v in enumerate(values)],
                        conf={"message.max.bytes": 3 * size, "batch.size": 1_000_000, "compression.type": "none"})
    assert [d.offset for d in delivered] == [0, 1, 2, 3]
    msgs = consume_assigned(weir.bootstrap, topic, [0], 4, timeout=60)
    assert [m.value() for m in msgs] == values


def test_record_larger_than_max_message_bytes(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=1, config={"max.message.bytes": "1000"})
    from confluent_kafka import Producer

    p = Producer(client_conf(weir.bootstrap, **{"compression.type": "none", "retries": 0}))
    errors = []
    p.produce(topic, value=os.urandom(5000), on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(TIMEOUT) == 0
    assert len(errors) == 1 and errors[0] is not None, f"oversized record was accepted: {errors}"
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert watermarks(weir.bootstrap, topic, 0) == (0, 0)
    # A small record still goes through.
    assert produce(weir.bootstrap, topic, [{"value": b"small"}])[0].offset == 0


def test_watermarks_and_offsets_for_times(weir, topic):
    from confluent_kafka import Consumer

    create_topic(weir.bootstrap, topic, partitions=2)
    t0 = int(time.time() * 1000) - 100_000
    n = 10
    produce(weir.bootstrap, topic, [{"value": f"v{i}".encode(), "partition": 0, "timestamp": t0 + i * 1000}
                                    for i in range(n)])
    assert watermarks(weir.bootstrap, topic, 0) == (0, n)
    assert watermarks(weir.bootstrap, topic, 1) == (0, 0)

    c = Consumer(client_conf(weir.bootstrap, **{"group.id": unique_topic("oft"), "enable.auto.commit": False}))
    try:
        def lookup(ts):
            (r,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=TIMEOUT)
            assert r.error is None, r.error
            return r.offset

        assert lookup(t0) == 0
        assert lookup(t0 + 5500) == 6  # first record with timestamp >= t0+5500
        assert lookup(t0 + 9000) == 9
        assert lookup(t0 + 10_000) == -1  # after the last record: no offset
        assert lookup(t0 - 1_000_000) == 0
    finally:
        c.close()


def test_consume_from_the_middle(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=1)
    produce(weir.bootstrap, topic, [{"value": str(i).encode()} for i in range(50)])
    msgs = consume_assigned(weir.bootstrap, topic, [0], 20, start_offset=30)
    assert [int(m.value()) for m in msgs] == list(range(30, 50))
    assert [m.offset() for m in msgs] == list(range(30, 50))


def test_many_topics_and_partitions(weir):
    a = admin(weir.bootstrap)
    names = [unique_topic(f"many{i:03d}") for i in range(100)]
    fs = a.create_topics([NewTopic(n, num_partitions=6, replication_factor=1) for n in names],
                         request_timeout=120, operation_timeout=120)
    for n in names:
        fs[n].result(timeout=120)

    def all_there():
        md = a.list_topics(timeout=30)
        return all(n in md.topics and len(md.topics[n].partitions) == 6 for n in names)

    wait_until(all_there, timeout=60, what="100 topics x 6 partitions in metadata")
    records = [{"value": f"{n}/{p}".encode(), "partition": p} for n in names[:10] for p in range(6)]
    for n in names[:10]:
        produce(weir.bootstrap, n, [r for r in records if r["value"].startswith(n.encode())])
    for n in names[:10]:
        msgs = consume_assigned(weir.bootstrap, n, range(6), 6)
        assert sorted(m.value().decode() for m in msgs) == sorted(f"{n}/{p}" for p in range(6))
    fs = a.delete_topics(names, request_timeout=120, operation_timeout=120)
    for n in names:
        fs[n].result(timeout=120)
