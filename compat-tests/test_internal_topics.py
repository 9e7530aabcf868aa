"""Internal topics are closed to clients for deletion: DeleteRecords on a
`__consumer_offsets` partition gets INVALID_TOPIC_EXCEPTION (as in Kafka's
ReplicaManager.deleteRecords) and DeleteTopics of `__consumer_offsets` is refused
with INVALID_TOPIC_EXCEPTION "Cannot delete internal topic" (a weir deviation:
Kafka's broker has no such check). The offsets committed before stay readable,
also after a restart (they are reloaded from the untouched log)."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from lib.clients import admin, client_conf, create_topic, wait_until

pytestmark = pytest.mark.timeout(180)

OFFSETS = "__consumer_offsets"


def _java_hash(s: str) -> int:
    h = 0
    for ch in s.encode("utf-16-be").decode("utf-16-be"):
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def _group_partition(group: str, partitions: int = 50) -> int:
    return abs(_java_hash(group)) % partitions


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(client_conf(bootstrap, **{"group.id": group, "enable.auto.commit": False}))


def _committed(bootstrap: str, group: str, topic: str) -> int:
    c = _consumer(bootstrap, group)
    try:
        got = c.committed([TopicPartition(topic, 0)], timeout=10)
        assert got[0].error is None, got
        return got[0].offset
    finally:
        c.close()


def test_internal_topic_deletions_are_refused_and_offsets_survive(weir_factory, topic):
    weir = weir_factory()
    create_topic(weir.bootstrap, topic)
    group = f"internal-{uuid.uuid4().hex[:8]}"
    c = _consumer(weir.bootstrap, group)
    try:
        c.assign([TopicPartition(topic, 0)])
        c.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
    finally:
        c.close()
    assert _committed(weir.bootstrap, group, topic) == 7
    gp = _group_partition(group)

    a = admin(weir.bootstrap)
    # DeleteRecords up to the high watermark of the group's partition: refused.
    fs = a.delete_records([TopicPartition(OFFSETS, gp, OFFSET_END)], request_timeout=15, operation_timeout=15)
    with pytest.raises(KafkaException) as info:
        list(fs.values())[0].result(timeout=30)
    assert info.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, info.value

    # DeleteTopics of __consumer_offsets: refused; an ordinary topic in the same request is deleted.
    other = f"{topic}-other"
    create_topic(weir.bootstrap, other)
    fs = a.delete_topics([OFFSETS, other], operation_timeout=30, request_timeout=30)
    with pytest.raises(KafkaException) as info:
        fs[OFFSETS].result(timeout=30)
    err = info.value.args[0]
    # librdkafka sends DeleteTopics v1, which has no error message field.
    assert err.code() == KafkaError.TOPIC_EXCEPTION, err
    fs[other].result(timeout=30)
    wait_until(lambda: other not in a.list_topics(timeout=5).topics, what=f"{other} deleted")

    # Nothing was lost: the topic, its log start and the committed offset are all there.
    md = a.list_topics(topic=OFFSETS, timeout=10)
    assert md.topics[OFFSETS].error is None and len(md.topics[OFFSETS].partitions) == 50
    probe = _consumer(weir.bootstrap, f"probe-{uuid.uuid4().hex[:8]}")
    try:
        low, high = probe.get_watermark_offsets(TopicPartition(OFFSETS, gp), timeout=10)
        assert low == 0 and high >= 1, (low, high)
    finally:
        probe.close()
    assert _committed(weir.bootstrap, group, topic) == 7

    # And the group's offsets come back from the log after a restart.
    weir.restart()
    wait_until(lambda: _committed(weir.bootstrap, group, topic) == 7, timeout=30,
               what="the committed offset after a restart")
