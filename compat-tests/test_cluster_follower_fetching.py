"""Fetching from the closest replica (KIP-392) on a Weir cluster (issue 11).

Three brokers in racks rack1..rack3 with Kafka's
`replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector`;
a topic on all three, led by broker 1. A confluent-kafka consumer with
`client.rack=rack2` is sent by the leader to broker 2 (Fetch's
`preferred_read_replica`) and reads every record there: librdkafka's own
statistics show the bytes coming from broker 2, not the leader. A consumer
without `client.rack` reads from the leader.
"""

from __future__ import annotations

import json

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from lib.clients import admin, client_conf, unique_topic, wait_until
from lib.cluster import WeirCluster

SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
COUNT, SIZE = 1000, 100


def consume_all(bootstrap: str, topic: str, **extra) -> tuple[list[bytes], dict[int, int]]:
    """Every record of the topic, in order, and the bytes received from each broker."""
    stats: dict[int, int] = {}

    def on_stats(text: str) -> None:
        for broker in json.loads(text).get("brokers", {}).values():
            if broker.get("nodeid", -1) >= 0:
                stats[broker["nodeid"]] = broker.get("rxbytes", 0)

    c = Consumer(client_conf(bootstrap, **{"group.id": unique_topic("fff"), "auto.offset.reset": "earliest",
                                           "enable.auto.commit": False, "statistics.interval.ms": 500,
                                           "stats_cb": on_stats, **extra}))
    c.subscribe([topic])
    values: list[bytes] = []
    try:
        wait_until(lambda: values.extend(m.value() for m in c.consume(100, 0.5) if m.error() is None)
                   or len(values) >= COUNT, timeout=60, interval=0, what=f"{COUNT} records")
        seen = dict(stats)
        wait_until(lambda: c.poll(0.2) is None and stats != seen, timeout=10, interval=0,
                   what="statistics after the last record")
    finally:
        c.close()
    return values, dict(stats)


def test_a_consumer_reads_from_the_in_sync_replica_in_its_rack():
    with WeirCluster(3, overrides={"replica.selector.class": SELECTOR}, name="racks") as c:
        for i in (1, 2, 3):
            c.node(i).overrides["broker.rack"] = f"rack{i}"
        c.start()
        topic = unique_topic("racked")
        client = admin(c.bootstrap())  # kept alive until the answer is in
        client.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2, 3]])])[topic].result(30)
        p = Producer(client_conf(c.bootstrap(), **{"acks": "all"}))
        expected = [f"msg={i}".encode().ljust(SIZE, b".") for i in range(COUNT)]
        for v in expected:
            p.produce(topic, value=v)
        assert p.flush(30) == 0
        wait_until(lambda: sorted(admin(c.bootstrap()).list_topics(topic=topic, timeout=10)
                                  .topics[topic].partitions[0].isrs) == [1, 2, 3], timeout=30, what="a full ISR")

        values, rx = consume_all(c.bootstrap(), topic, **{"client.rack": "rack2"})
        print(f"\nclient.rack=rack2: bytes received per broker {rx}")
        assert values == expected
        assert rx.get(2, 0) > COUNT * SIZE, rx
        assert rx.get(2, 0) > max(rx.get(1, 0), rx.get(3, 0)), rx

        values, rx = consume_all(c.bootstrap(), topic)
        print(f"no client.rack: bytes received per broker {rx}")
        assert values == expected
        assert rx.get(1, 0) > COUNT * SIZE, rx
