"""KIP-848 consumer groups (`group.protocol=consumer`) with real clients:
confluent-kafka (librdkafka 2.16, ConsumerGroupHeartbeat v1) subscribers
with each server assignor and a regular-expression subscription, the Java
3.9 console consumer (v0) with kafka-consumer-groups, a member killed with
SIGKILL, a broker killed under a live member, and refused assignors."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupType, KafkaError, TopicPartition

from lib.clients import (JAVA_ENV, admin, client_conf, create_topic, java_available, java_tool, produce, run,
                         wait_until)

pytestmark = pytest.mark.timeout(180)

# Short sessions so a killed member is noticed within seconds.
FAST_SESSIONS = {"group.consumer.session.timeout.ms": "6000", "group.consumer.heartbeat.interval.ms": "1000"}


def _consumer(bootstrap: str, group: str, **extra) -> Consumer:
    return Consumer(client_conf(bootstrap, **{"group.id": group, "group.protocol": "consumer",
                                              "auto.offset.reset": "earliest", **extra}))


def _describe(bootstrap: str, group: str):
    client = admin(bootstrap)  # must outlive the future
    [future] = client.describe_consumer_groups([group], request_timeout=20).values()
    return future.result()


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_three_members_share_six_partitions_and_read_every_record_once(weir, topic, assignor):
    create_topic(weir.bootstrap, topic, partitions=6)
    produce(weir.bootstrap, topic, [{"value": b"v%d" % i, "partition": i % 6} for i in range(600)])
    group = f"kip848-{uuid.uuid4().hex[:8]}"
    seen: list[bytes] = []
    assignments: dict[int, list[int]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def member(i: int) -> None:
        c = _consumer(weir.bootstrap, group, **{"group.remote.assignor": assignor})
        try:
            c.subscribe([topic])
            while not stop.is_set():
                m = c.poll(0.2)
                if m is not None and not m.error():
                    with lock:
                        seen.append(m.value())
                assignments[i] = sorted(tp.partition for tp in c.assignment())
        finally:
            c.close()

    threads = [threading.Thread(target=member, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(seen) >= 600 and sorted(p for a in assignments.values() for p in a) == list(range(6))
                   and all(len(a) == 2 for a in assignments.values()), timeout=60, what="600 records, 2 partitions each")
        description = _describe(weir.bootstrap, group)
        assert description.type == ConsumerGroupType.CONSUMER
        assert description.state == ConsumerGroupState.STABLE
        assert description.partition_assignor == assignor
        assert sorted(len(m.assignment.topic_partitions) for m in description.members) == [2, 2, 2]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert sorted(seen) == sorted(b"v%d" % i for i in range(600)), "every record exactly once"


def test_regex_subscription_picks_up_a_topic_created_later(weir, topic):
    first, second = f"{topic}-a", f"{topic}-b"
    create_topic(weir.bootstrap, first, partitions=2)
    produce(weir.bootstrap, first, [{"value": b"a%d" % i} for i in range(10)])
    c = _consumer(weir.bootstrap, f"kip848-{uuid.uuid4().hex[:8]}", **{"topic.metadata.refresh.interval.ms": 1000})
    seen: list[bytes] = []
    try:
        c.subscribe([f"^{topic}-.*"])
        deadline = time.monotonic() + 60
        created = False
        while time.monotonic() < deadline and len(seen) < 20:
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen.append(m.value())
            if len(seen) >= 10 and not created:
                create_topic(weir.bootstrap, second, partitions=3)
                produce(weir.bootstrap, second, [{"value": b"b%d" % i} for i in range(10)])
                created = True
        assert sorted(seen) == sorted([b"a%d" % i for i in range(10)] + [b"b%d" % i for i in range(10)])
        assert {tp.topic for tp in c.assignment()} == {first, second}
    finally:
        c.close()


def test_an_unknown_server_assignor_is_refused(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=1)
    errors: list[KafkaError] = []
    c = _consumer(weir.bootstrap, f"kip848-{uuid.uuid4().hex[:8]}",
                  **{"group.remote.assignor": "no-such-assignor", "error_cb": errors.append})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not errors:
            m = c.poll(0.2)
            if m is not None and m.error():
                errors.append(m.error())
        assert any("UNSUPPORTED_ASSIGNOR" in e.name() or "assignor" in e.str().lower() for e in errors), errors
        assert c.assignment() == []
    finally:
        c.close()


def test_a_member_survives_a_broker_kill9_and_resumes_at_its_commit(weir_factory, topic):
    w = weir_factory()
    create_topic(w.bootstrap, topic, partitions=2)
    produce(w.bootstrap, topic, [{"value": b"v%d" % i, "partition": i % 2} for i in range(40)])
    c = _consumer(w.bootstrap, f"kip848-{uuid.uuid4().hex[:8]}", **{"enable.auto.commit": False})
    try:
        c.subscribe([topic])
        before: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(before) < 40 and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                before.append(m.value())
        assert len(before) == 40
        c.commit(asynchronous=False)
        w.kill9()
        w.restart()
        produce(w.bootstrap, topic, [{"value": b"v%d" % i, "partition": i % 2} for i in range(40, 60)])
        # The restarted broker does not know the member: it rejoins and resumes at the committed offsets.
        after: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(after) < 20 and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                after.append(m.value())
        assert sorted(after) == sorted(b"v%d" % i for i in range(40, 60)), "resumed at the commit, nothing repeated"
        committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=20)
        assert [tp.offset for tp in committed] == [20, 20]
    finally:
        c.close()


def _java_member(bootstrap: str, topic: str, group: str, out) -> subprocess.Popen:
    env = {**os.environ, **JAVA_ENV}
    return subprocess.Popen([str(java_tool("kafka-console-consumer")), "--bootstrap-server", bootstrap,
                             "--topic", topic, "--group", group, "--from-beginning",
                             "--consumer-property", "group.protocol=consumer"],
                            stdout=out, stderr=subprocess.DEVNULL, env=env, start_new_session=True)


@pytest.mark.skipif(not java_available(), reason="java is not installed")
@pytest.mark.timeout(240)
def test_java_members_split_partitions_and_a_killed_one_hands_them_over(weir_factory, topic, tmp_path):
    w = weir_factory(FAST_SESSIONS)
    create_topic(w.bootstrap, topic, partitions=6)
    group = f"java848-{uuid.uuid4().hex[:8]}"
    outs = [open(tmp_path / f"member{i}.txt", "w+b") for i in range(2)]
    members = [_java_member(w.bootstrap, topic, group, out) for out in outs]

    def groups_tool(*args: str) -> str:
        return run([str(java_tool("kafka-consumer-groups")), "--bootstrap-server", w.bootstrap, *args],
                   timeout=90, env=JAVA_ENV, check=False).stdout

    def assigned_counts() -> list[int]:
        try:
            return sorted(len(m.assignment.topic_partitions) for m in _describe(w.bootstrap, group).members)
        except Exception:  # noqa: BLE001 - not there yet
            return []

    try:
        try:
            wait_until(lambda: assigned_counts() == [3, 3], timeout=90, what="two Java members with 3 partitions each")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{groups_tool('--describe', '--group', group, '--members', '--verbose')}"
                                 f"\nmember exit codes: {[m.poll() for m in members]}") from e
        produce(w.bootstrap, topic, [{"value": b"first-%d" % i, "partition": i % 6} for i in range(60)])
        described = groups_tool("--describe", "--group", group)
        rows = [line.split() for line in described.splitlines() if line.startswith(group)]
        assert len(rows) == 6 and len({r[6] for r in rows}) == 2, described
        assert "Stable" in groups_tool("--describe", "--group", group, "--state")

        def lines(i: int) -> list[str]:
            outs[i].flush()
            return (tmp_path / f"member{i}.txt").read_text().split()

        wait_until(lambda: len(lines(0)) + len(lines(1)) >= 60, timeout=30, what="the first 60 records")
        os.killpg(members[1].pid, signal.SIGKILL)
        members[1].wait(10)
        # Session timeout 6 s: the survivor then owns all six partitions.
        wait_until(lambda: assigned_counts() == [6], timeout=30, what="the survivor taking every partition")
        produce(w.bootstrap, topic, [{"value": b"second-%d" % i, "partition": i % 6} for i in range(60)])
        wait_until(lambda: sum(x.startswith("second-") for x in lines(0)) >= 60, timeout=30,
                   what="the survivor reading the records of all partitions")
        # The killed member's records may come again from the survivor (its
        # auto-commit had not run): the uncommitted tail, nothing lost.
        everything = lines(0) + lines(1)
        assert {x for x in everything if x.startswith("first-")} == {f"first-{i}" for i in range(60)}
        assert sorted(x for x in lines(0) if x.startswith("first-")) == sorted(set(lines(0)) & {
            f"first-{i}" for i in range(60)}), "the survivor read no record twice"
        assert sorted(x for x in lines(0) if x.startswith("second-")) == sorted(f"second-{i}" for i in range(60))
    finally:
        for m in members:
            if m.poll() is None:
                os.killpg(m.pid, signal.SIGTERM)
                try:
                    m.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(m.pid, signal.SIGKILL)
        for out in outs:
            out.close()
