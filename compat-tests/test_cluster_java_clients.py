"""Kafka's own verifiable producer and consumer on a Weir cluster through kill -9
of a partition leader and of the group coordinator (issue 11), in the shape of
Kafka's replication system test: an idempotent acks=all producer writes
continuously, a two-member consumer group reads and commits after every poll,
and the run is checked as a whole afterwards.

- the producer reports no send error (NOT_LEADER_OR_FOLLOWER and the
  coordinator's move stay inside the client);
- every acknowledged record is read by the group, at the partition and offset
  the producer was told, with its value;
- every commit the consumers report as successful is at or after the previous
  one of the same partition (a committed offset never goes backwards across
  the coordinator's move), and the last ones equal the group's committed
  offsets read back from the new coordinator.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

from lib.clients import JAVA_ENV, admin, client_conf, java_available, java_tool, unique_topic, wait_until
from lib.cluster import WeirCluster, group_coordinator, partition_leaders
from lib.members import die_with_the_test, stop_process_groups

pytestmark = [pytest.mark.java, pytest.mark.skipif(not java_available(), reason="needs Java for the verifiable clients")]

FAST = {"broker.heartbeat.interval.ms": 300, "broker.session.timeout.ms": 2000}
PARTITIONS = 6
# Records acknowledged between two steps of the schedule.
STEP = 1500


class JsonEvents:
    """A verifiable client started in its own session, its stdout (one JSON event
    per line) in a file read while it runs."""

    def __init__(self, path: Path, cmd: list[str]):
        self.path = path
        self._out = path.open("w")
        env = dict(os.environ, **JAVA_ENV)
        self.process = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=env,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=die_with_the_test)

    def events(self, name: str | None = None) -> list[dict]:
        """Its events so far (named `name`); raises if it exited on its own."""
        if self.process.poll() is not None and not self._out.closed:
            tail = self.path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{self.path.name}: exited {self.process.returncode}:\n{tail}")
        found = []
        for line in self.path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # the line being written
                continue
            if name is None or event.get("name") == name:
                found.append(event)
        return found

    def stop(self) -> None:
        stop_process_groups([self.process])
        self._out.close()


def acknowledged(producer: JsonEvents) -> dict[tuple[int, int], str]:
    return {(e["partition"], e["offset"]): e["value"] for e in producer.events("producer_send_success")}


def consumed(consumers: list[JsonEvents]) -> dict[tuple[int, int], set[str]]:
    read: dict[tuple[int, int], set[str]] = {}
    for c in consumers:
        for e in c.events("record_data"):
            read.setdefault((e["partition"], e["offset"]), set()).add(e["value"])
    return read


def test_verifiable_clients_go_on_through_kill_of_a_leader_and_of_the_coordinator(tmp_path):
    with WeirCluster(3, overrides=FAST, name="java-clients") as cluster:
        cluster.start()
        topic, group = unique_topic("verifiable"), unique_topic("verifiable-group")
        bootstrap = cluster.bootstrap()
        client = admin(bootstrap)  # kept alive until the answer is in
        client.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
        wait_until(lambda: len(partition_leaders(bootstrap, topic)) == PARTITIONS, timeout=30,
                   what="the topic's leaders")

        properties = tmp_path / "producer.properties"
        # As Kafka's system tests configure an idempotent verifiable producer (the tool sets retries=0).
        properties.write_text("enable.idempotence=true\nacks=all\nretries=2147483647\n"
                              "max.in.flight.requests.per.connection=5\n")
        consumers = [JsonEvents(tmp_path / f"consumer-{i}.jsonl", [
            str(java_tool("kafka-verifiable-consumer")), "--bootstrap-server", bootstrap, "--topic", topic,
            "--group-id", group, "--verbose", "--reset-policy", "earliest", "--session-timeout", "10000"])
            for i in (1, 2)]
        producer = JsonEvents(tmp_path / "producer.jsonl", [
            str(java_tool("kafka-verifiable-producer")), "--bootstrap-server", bootstrap, "--topic", topic,
            "--acks", "-1", "--throughput", "1000", "--max-messages", "-1", "--repeating-keys", "100",
            "--producer.config", str(properties)])
        schedule: list[str] = []
        try:
            def acked_at_least(n: int) -> None:
                wait_until(lambda: len(producer.events("producer_send_success")) >= n, timeout=90, interval=0.5,
                           what=f"{n} records acknowledged (events so far: {producer.events()[-3:]})")

            def read_at_least(n: int) -> None:
                wait_until(lambda: len(consumed(consumers)) >= n, timeout=90, interval=0.5,
                           what=f"{n} records read by the group")

            def kill_and_restart(victim: int, why: str) -> None:
                base = len(producer.events("producer_send_success"))
                read = len(consumed(consumers))
                cluster.node(victim).kill9()
                killed = time.monotonic()
                acked_at_least(base + STEP)
                read_at_least(read + STEP)
                schedule.append(f"kill -9 of broker {victim} ({why}): {STEP} more records acknowledged and read "
                                f"{time.monotonic() - killed:.1f} s later")
                cluster.node(victim).start()
                wait_until(lambda: all(len(isr) == 3 for isr in isrs(cluster, topic).values()), timeout=60,
                           interval=0.5, what=f"broker {victim} back in every ISR")

            acked_at_least(STEP)
            read_at_least(STEP // 2)
            kill_and_restart(partition_leaders(bootstrap, topic)[0], "leader of partition 0")
            kill_and_restart(group_coordinator(cluster.bootstrap(), group), "the group coordinator")
            acked_at_least(len(producer.events("producer_send_success")) + STEP)
        finally:
            producer.stop()
        acked = acknowledged(producer)
        # Sends the tool's main loop makes after SIGTERM closed its producer are refused by the
        # client itself (IllegalStateException), never reach a broker and are not errors here.
        errors = [e for e in producer.events("producer_send_error")
                  if "after producer has been closed" not in e.get("message", "")]
        try:
            wait_until(lambda: set(acked) <= set(consumed(consumers)), timeout=90, interval=0.5,
                       what="the group reading every acknowledged record")
            # The last batch read is committed after the poll that returned it.
            time.sleep(2)
        finally:
            for c in consumers:
                c.stop()

        read = consumed(consumers)
        # Each consumer's successful commits in the order it made them.
        commits = [[(o["partition"], o["offset"], e["timestamp"]) for e in c.events("offsets_committed")
                    if e.get("success") for o in e.get("offsets", [])] for c in consumers]
        print("\n" + "\n".join(schedule))
        print(f"{len(acked)} records acknowledged, {len(errors)} send errors; {len(read)} offsets read, "
              f"{sum(len(v) for v in read.values())} distinct values; "
              f"{sum(len(h) for h in commits)} partition offsets committed")
        assert not errors, errors[:5]
        wrong = {k: (v, read[k]) for k, v in acked.items() if read.get(k) != {v}}
        assert not wrong, f"{len(wrong)} acknowledged records read otherwise: {list(wrong.items())[:5]}"
        # A partition moves between the members only at a rebalance; within one member's
        # history its commits never fall back, and the newest one across the group is
        # what the coordinator holds at the end.
        last: dict[int, tuple[int, int]] = {}
        for history in commits:
            mine: dict[int, int] = {}
            for partition, offset, at in history:
                assert offset >= mine.get(partition, 0), (partition, offset, mine)
                mine[partition] = offset
                if at >= last.get(partition, (0, -1))[1]:
                    last[partition] = (offset, at)
        newest = {p: offset for p, (offset, _) in last.items()}
        ends: dict[int, int] = {}
        for partition, offset in read:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        assert len(ends) == PARTITIONS, f"keyed records reach every partition: {ends}"
        check = Consumer(client_conf(cluster.bootstrap(), **{"group.id": group}))
        try:
            wanted = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            committed = {tp.partition: tp.offset for tp in check.committed(wanted, timeout=15)}
        finally:
            check.close()
        assert committed == newest, (committed, newest)
        assert newest == ends, (newest, ends)


def isrs(cluster: WeirCluster, topic: str) -> dict[int, list[int]]:
    md = admin(cluster.bootstrap()).list_topics(topic=topic, timeout=10)
    return {p.id: sorted(p.isrs) for p in md.topics[topic].partitions.values()}
