"""Offset commits of a "simple" group under KIP-848 clients: a confluent-kafka
consumer with `group.protocol=consumer` that assigns its partitions itself
(librdkafka 2.15+ commits with OffsetCommit v9, member epoch -1 and its own
client-generated member id). Kafka accepts a negative epoch to a missing or
empty group whatever the member id (OffsetMetadataManager.validateOffsetCommit);
so does weir."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from lib.clients import client_conf, create_topic, poll_messages, produce, wait_until

pytestmark = pytest.mark.timeout(120)


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(client_conf(bootstrap, **{"group.id": group, "group.protocol": "consumer",
                                              "enable.auto.commit": False, "auto.offset.reset": "earliest"}))


def _assign_commit_and_read_back(bootstrap: str, topic: str, group: str) -> None:
    c = _consumer(bootstrap, group)
    try:
        c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        result = c.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 5)], asynchronous=False)
        assert [(tp.partition, tp.offset, tp.error) for tp in result] == [(0, 3, None), (1, 5, None)], result
        got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        assert [(tp.partition, tp.offset, tp.error) for tp in got] == [(0, 3, None), (1, 5, None)], got
    finally:
        c.close()
    # A second client of the same group reads the same offsets.
    c = _consumer(bootstrap, group)
    try:
        got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        assert [(tp.partition, tp.offset) for tp in got] == [(0, 3), (1, 5)], got
    finally:
        c.close()


def test_assign_and_commit_creates_a_simple_group(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=2)
    _assign_commit_and_read_back(weir.bootstrap, topic, f"simple-{uuid.uuid4().hex[:8]}")


def test_assign_and_commit_to_an_emptied_consumer_group(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=2)
    produce(weir.bootstrap, topic, [{"value": b"v%d" % i, "partition": i % 2} for i in range(10)])
    group = f"simple-{uuid.uuid4().hex[:8]}"
    # A subscriber makes it a consumer group, then leaves it empty.
    c = _consumer(weir.bootstrap, group)
    try:
        c.subscribe([topic])
        assert poll_messages(c, 10, timeout=30), "the subscriber read nothing"
        wait_until(lambda: len(c.assignment()) == 2, what="the subscriber's assignment")
    finally:
        c.close()
    _assign_commit_and_read_back(weir.bootstrap, topic, group)
