"""Three consumer processes of one client in a classic group on a 6-partition
topic, as a user runs them: the partitions are spread and each record is
read once; kill -9 one, its partitions move to the other two within the
session timeout (6 s); start it again, it gets a share back. Kafka 3.9's Java
console consumer (range, its default), kafka-python (round robin), KafkaJS
(its round-robin default) and confluent-kafka (cooperative-sticky)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from lib.clients import JAVA_ENV, client_conf, create_topic, java_available, java_tool, produce, wait_until
from lib.members import die_with_the_test, member_partitions, stop_process_groups

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.timeout(240)

SESSION_TIMEOUT_MS = 6000

# A member that prints the value of every record it reads, one per line, until it is killed.
_KAFKA_PYTHON_MEMBER = """
import sys
from kafka import KafkaConsumer
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
bootstrap, topic, group, session = sys.argv[1:5]
c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                  partition_assignment_strategy=[RoundRobinPartitionAssignor], session_timeout_ms=int(session),
                  heartbeat_interval_ms=500, auto_commit_interval_ms=100)
for m in c:
    print(m.value.decode(), flush=True)
"""

_CONFLUENT_MEMBER = """
import json, sys
from confluent_kafka import Consumer
conf, topic = json.loads(sys.argv[1]), sys.argv[2]
c = Consumer(conf)
c.subscribe([topic])
while True:
    m = c.poll(0.2)
    if m is not None and not m.error():
        print(m.value().decode(), flush=True)
"""


def _member_command(client: str, bootstrap: str, topic: str, group: str) -> list[str]:
    if client == "java":
        return [str(java_tool("kafka-console-consumer")), "--bootstrap-server", bootstrap, "--topic", topic,
                "--group", group, "--from-beginning",
                "--consumer-property", f"session.timeout.ms={SESSION_TIMEOUT_MS}",
                "--consumer-property", "heartbeat.interval.ms=500",
                "--consumer-property", "auto.commit.interval.ms=100"]
    if client == "kafka-python":
        return [sys.executable, "-c", _KAFKA_PYTHON_MEMBER, bootstrap, topic, group, str(SESSION_TIMEOUT_MS)]
    if client == "kafkajs":
        return ["node", str(HERE / "kafkajs" / "group_member.js"), bootstrap, topic, group]
    conf = client_conf(bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                     "partition.assignment.strategy": "cooperative-sticky",
                                     "session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 500,
                                     "auto.commit.interval.ms": 100})
    return [sys.executable, "-c", _CONFLUENT_MEMBER, json.dumps(conf), topic]


def _available(client: str) -> bool:
    if client == "java":
        return java_available()
    if client == "kafkajs":
        return shutil.which("node") is not None and (HERE / "node_modules" / "kafkajs").is_dir()
    return True


@pytest.mark.parametrize("client", ["java", "kafka-python", "kafkajs", "confluent-kafka"])
def test_three_members_spread_hand_over_a_killed_ones_partitions_and_share_again(weir, topic, tmp_path, client):
    if not _available(client):
        pytest.skip(f"{client} is not installed (scripts/install-test-deps.sh)")
    create_topic(weir.bootstrap, topic, partitions=6)
    group = f"members-{client}-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **JAVA_ENV}
    processes: list[subprocess.Popen] = []

    def start(i: int) -> subprocess.Popen:
        with open(tmp_path / f"member{i}-{len(processes)}.txt", "wb") as out:
            p = subprocess.Popen(_member_command(client, weir.bootstrap, topic, group), stdout=out,
                                 stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                 preexec_fn=die_with_the_test)
        processes.append(p)
        return p

    def read() -> Counter:
        """Every record value read so far, by all members, with how often it was read."""
        values: Counter = Counter()
        for f in tmp_path.glob("member*.txt"):
            # A line still being written has no newline yet: left for the next look.
            values.update(f.read_text().split("\n")[:-1])
        return values

    def spread() -> list[int]:
        return sorted(len(p) for p in member_partitions(weir.bootstrap, group).values())

    def produce_round(tag: str) -> set[str]:
        produce(weir.bootstrap, topic, [{"value": f"{tag}-{i}".encode(), "partition": i % 6} for i in range(60)])
        return {f"{tag}-{i}" for i in range(60)}

    try:
        members = [start(i) for i in range(3)]
        wait_until(lambda: spread() == [2, 2, 2], timeout=90, what="three members with 2 partitions each")
        first = produce_round("first")
        wait_until(lambda: first <= read().keys(), timeout=30, what="the first 60 records")
        assert all(read()[v] == 1 for v in first), "in a settled group each record is read once"

        os.killpg(members[1].pid, signal.SIGKILL)
        members[1].wait(10)
        # Its session runs out after 6 s; then the two others share its partitions.
        wait_until(lambda: spread() == [3, 3], timeout=SESSION_TIMEOUT_MS / 1000 + 20,
                   what="the two survivors sharing the killed member's partitions")
        second = produce_round("second")
        # The killed member's uncommitted tail may be read again: nothing is lost.
        wait_until(lambda: second <= read().keys(), timeout=30, what="the survivors reading all partitions")

        members[1] = start(1)
        wait_until(lambda: spread() == [2, 2, 2], timeout=60, what="the restarted member getting a share back")
        third = produce_round("third")
        wait_until(lambda: third <= read().keys(), timeout=30, what="the records produced after it rejoined")
        seen = read()
        assert all(seen[v] == 1 for v in third), {v: n for v, n in seen.items() if v in third and n != 1}
        assert first | second | third <= seen.keys()
        assert not set(seen) - (first | second | third), "nothing but the records produced"
        assert all(p.poll() is None for p in members), [p.poll() for p in members]
    finally:
        stop_process_groups(processes)
