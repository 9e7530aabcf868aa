"""Partition reassignment on a Weir cluster (issue 11) with Kafka's own
`kafka-reassign-partitions.sh` (AlterPartitionReassignments,
ListPartitionReassignments): a partition moves from brokers 1 and 2 to
brokers 4 and 3 while an idempotent acks=all producer writes to it; the
new replicas copy the log and join the ISR, the reassignment completes
(leadership leaves the removed brokers), the old replicas delete their
copy, and every acknowledged record is read back once at its offset.

`--verify` runs with `--preserve-throttles`: without it the tool clears the
replication throttles with IncrementalAlterConfigs on BROKER resources,
which Weir does not accept yet (dynamic broker configs are issue 14).
"""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka.admin import NewTopic

from lib.clients import (JAVA_ENV, BackgroundProducer, admin, assert_read_back, java_available, java_tool, run,
                         unique_topic, wait_until)
from lib.cluster import WeirCluster

FAST = {"broker.heartbeat.interval.ms": 300, "broker.session.timeout.ms": 2000}

pytestmark = [
    pytest.mark.java,
    pytest.mark.skipif(not java_available(), reason="needs Java for kafka-reassign-partitions.sh"),
]


def replicas_and_isr(bootstrap: str, topic: str) -> tuple[int, list[int], list[int]]:
    md = admin(bootstrap).list_topics(topic=topic, timeout=10)
    p = md.topics[topic].partitions[0]
    return p.leader, list(p.replicas), sorted(p.isrs)


def test_kafka_reassign_partitions_moves_a_partition_while_it_is_written(tmp_path):
    with WeirCluster(3, brokers=1, overrides=FAST, name="reassign") as c:
        c.start()
        topic = unique_topic("moved")
        client = admin(c.bootstrap())  # kept alive until the answer is in
        new = NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2]], config={"min.insync.replicas": "2"})
        client.create_topics([new])[topic].result(30)
        wait_until(lambda: replicas_and_isr(c.bootstrap(), topic)[2] == [1, 2], timeout=30, what="a full ISR")

        with BackgroundProducer(c.bootstrap(), topic) as writer:
            wait_until(lambda: len(writer.acked) >= 500, timeout=30, what="records acknowledged before the move")
            plan = tmp_path / "reassignment.json"
            plan.write_text(json.dumps({"version": 1, "partitions": [
                {"topic": topic, "partition": 0, "replicas": [4, 3], "log_dirs": ["any", "any"]}]}))
            tool = str(java_tool("kafka-reassign-partitions"))
            base = [tool, "--bootstrap-server", c.bootstrap(), "--reassignment-json-file", str(plan)]
            started = time.monotonic()
            out = run(base + ["--execute"], timeout=60, env=JAVA_ENV).stdout
            print(f"\n{out}")
            assert "Successfully started partition reassignment" in out, out
            verify = base + ["--verify", "--preserve-throttles"]
            wait_until(lambda: "is completed" in run(verify, timeout=60, env=JAVA_ENV).stdout, timeout=60,
                       interval=0.5, what="the reassignment completing")
            print(f"reassignment completed after {time.monotonic() - started:.2f} s")
            before = len(writer.acked)
            wait_until(lambda: len(writer.acked) >= before + 300, timeout=30,
                       what="records acknowledged after the move")
        assert not writer.errors, writer.errors[:5]
        leader, replicas, isr = replicas_and_isr(c.bootstrap(), topic)
        assert (replicas, isr) == ([4, 3], [3, 4]) and leader in (3, 4), (leader, replicas, isr)
        for old in (1, 2):
            wait_until(lambda: "deleted partition log" in c.node(old).tail(2000), timeout=30,
                       what=f"broker {old} deleting its copy")

        assert_read_back(c.bootstrap(), topic, writer.acked)
        print(f"{len(writer.acked)} records acknowledged across the move, every one read back at its offset")
