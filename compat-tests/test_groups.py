"""Consumer groups with real clients: confluent-kafka subscribers with each
assignor, the Java console consumer and kafka-consumer-groups, committed
offsets surviving a crash (also kill -9 in the middle of a stream of commits,
repeatedly), and the errors Kafka gives for bad commits."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

from lib.clients import (JAVA_ENV, admin, client_conf, create_topic, java_available, java_tool, poll_messages, produce,
                         run, wait_until)

pytestmark = pytest.mark.timeout(180)


def _subscribers(bootstrap: str, topic: str, group: str, strategy: str, n: int, expected: int) -> tuple[list, dict]:
    """Runs n subscribed consumers until `expected` records arrived; returns
    the values seen and each consumer's final assignment."""
    seen: list[bytes] = []
    assignments: dict[int, list[int]] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def consume(i: int) -> None:
        c = Consumer(client_conf(bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                               "partition.assignment.strategy": strategy,
                                               "session.timeout.ms": 10000}))
        try:
            c.subscribe([topic])
            while time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is not None and not m.error():
                    with lock:
                        seen.append(m.value())
                with lock:
                    done = len(seen) >= expected
                assignments[i] = sorted(tp.partition for tp in c.assignment())
                if done and sum(len(a) for a in assignments.values()) == 6:
                    break
        finally:
            c.close()

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return seen, assignments


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_three_subscribers_share_the_partitions_and_read_every_record_once(weir, topic, strategy):
    create_topic(weir.bootstrap, topic, partitions=6)
    produce(weir.bootstrap, topic, [{"key": b"k%d" % (i % 17), "value": b"v%d" % i} for i in range(600)])
    seen, assignments = _subscribers(weir.bootstrap, topic, f"g-{uuid.uuid4().hex[:8]}", strategy, 3, 600)
    assert sorted(seen) == sorted(b"v%d" % i for i in range(600)), "every record exactly once"
    owned = [p for parts in assignments.values() for p in parts]
    assert sorted(owned) == list(range(6)), f"partitions not spread once each: {assignments}"
    assert all(len(parts) == 2 for parts in assignments.values()), assignments


def test_committed_offsets_survive_kill9_and_resume(weir_factory, topic):
    w = weir_factory()
    create_topic(w.bootstrap, topic, partitions=1)
    produce(w.bootstrap, topic, [{"value": b"v%d" % i} for i in range(50)])
    group = f"g-{uuid.uuid4().hex[:8]}"
    conf = client_conf(w.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                       "enable.auto.commit": False})
    c = Consumer(conf)
    c.subscribe([topic])
    got = poll_messages(c, 30, timeout=30, interval=0.5)
    assert len(got) >= 30
    c.commit(offsets=[TopicPartition(topic, 0, 30, metadata="checkpoint-30")], asynchronous=False)
    c.close()
    w.kill9()
    w.restart()
    c = Consumer(conf)
    try:
        committed = c.committed([TopicPartition(topic, 0)], timeout=20)
        assert committed[0].offset == 30
        assert committed[0].metadata == "checkpoint-30", "commit metadata must round-trip"
        c.subscribe([topic])
        first = None
        deadline = time.monotonic() + 30
        while first is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                first = m
        assert first is not None and first.offset() == 30 and first.value() == b"v30"
    finally:
        c.close()


# Commits n = first, first+1, ... in a tight loop, offset n * (p + 1) with metadata "n=<n>" for
# every partition p in one request, and logs "sent n" before and "acked n" after each commit
# that returned without error. Runs in a process of its own, so that killing it right after
# the broker leaves no commit to be retried against the restarted broker.
_COMMITTER = """
import json, sys, time
from confluent_kafka import Consumer, KafkaException, TopicPartition
conf, topic = json.loads(sys.argv[1]), sys.argv[2]
partitions, n, deadline = int(sys.argv[3]), int(sys.argv[4]), time.monotonic() + float(sys.argv[5])
c = Consumer(conf)
while time.monotonic() < deadline:
    print("sent", n, flush=True)
    try:
        c.commit(offsets=[TopicPartition(topic, p, n * (p + 1), metadata=f"n={n}") for p in range(partitions)],
                 asynchronous=False)
        print("acked", n, flush=True)
    except KafkaException:
        pass
    n += 1
"""


def _committer_log(path, kind: str) -> list[int]:
    """The n of every complete "<kind> n" line of a committer's log. The log is read while the
    committer writes it, and its buffer can reach the file in the middle of a line: a last line
    without its newline may be cut short ("acked " or "acked 12" of "acked 123"), so it is left out."""
    complete = path.read_text().split("\n")[:-1]
    fields = (line.split() for line in complete)
    return [int(f[1]) for f in fields if len(f) == 2 and f[0] == kind and f[1].isdigit()]


@pytest.mark.parametrize("rounds", [5, pytest.param(100, marks=[pytest.mark.slow, pytest.mark.timeout(300)])])
def test_acknowledged_commits_survive_kill9_mid_stream(weir_factory, topic, tmp_path, rounds):
    """Rounds of: commit as fast as possible, kill -9 the broker at a random moment, restart it.
    After each restart every partition holds the same commit, one that was sent and no older than
    the last one acknowledged."""
    # __consumer_offsets in small segments, cleaned often: kills also land during its compaction.
    w = weir_factory({"offsets.topic.segment.bytes": 65536, "log.cleaner.backoff.ms": 100,
                      "log.flush.scheduler.interval.ms": 100})
    partitions = 3
    create_topic(w.bootstrap, topic, partitions=partitions)
    group = f"g-{uuid.uuid4().hex[:8]}"
    conf = client_conf(w.bootstrap, **{"group.id": group, "enable.auto.commit": False})
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    sent: set[int] = set()
    last_acked = -1
    for round_no in range(rounds):
        log = tmp_path / f"commits-{round_no}.log"
        with open(log, "w") as out:
            committer = subprocess.Popen([sys.executable, "-c", _COMMITTER, json.dumps(conf), topic,
                                          str(partitions), str(max(sent, default=0) + 1), "60"],
                                         stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: len(_committer_log(log, "acked")) >= 50 or committer.poll() is not None, timeout=30,
                       interval=0.05, what=f"commits streaming in round {round_no}")
            assert committer.poll() is None, f"committer exited with {committer.returncode}"
            time.sleep(rng.uniform(0, 0.5))
            w.kill9()
        finally:
            committer.kill()
            committer.wait(timeout=10)
        sent |= set(_committer_log(log, "sent"))
        acked = _committer_log(log, "acked")
        assert len(acked) >= 50
        last_acked = max(last_acked, *acked)

        w.restart()
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c = Consumer(conf)
        try:
            committed = c.committed(tps, timeout=30)
        finally:
            c.close()
        a = admin(w.bootstrap)  # kept alive until the future resolves
        listed = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])[group].result(timeout=30)
        where = f"round {round_no} (seed {seed}): last acked n={last_acked}"
        assert (sorted((tp.partition, tp.offset, tp.metadata) for tp in listed.topic_partitions)
                == sorted((tp.partition, tp.offset, tp.metadata) for tp in committed)), where
        ns = set()
        for tp in committed:
            assert tp.error is None and (tp.metadata or "").startswith("n="), f"{where}: partition {tp.partition}: {tp}"
            n = int(tp.metadata[2:])
            assert tp.offset == n * (tp.partition + 1), f"{where}: offset and metadata of different commits: {tp}"
            assert n in sent, f"{where}: partition {tp.partition} holds n={n}, never sent"
            assert n >= last_acked, f"{where}: partition {tp.partition} went back to n={n}: an acknowledged commit lost"
            ns.add(n)
        assert len(ns) == 1, f"{where}: one OffsetCommit request is one write, yet partitions hold {sorted(ns)}"


def test_bad_commits_get_kafkas_errors_and_touch_nothing(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=1)
    c = Consumer(client_conf(weir.bootstrap, **{"group.id": f"g-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}))
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 5, metadata="ok")], asynchronous=False)
        for offsets, code in (
            ([TopicPartition(topic, 0, 9, metadata="x" * 5000)], KafkaError.OFFSET_METADATA_TOO_LARGE),
            ([TopicPartition(topic, 7, 9)], KafkaError.UNKNOWN_TOPIC_OR_PART),
        ):
            with pytest.raises(KafkaException) as failed:
                c.commit(offsets=offsets, asynchronous=False)
            assert failed.value.args[0].code() == code
        [committed] = c.committed([TopicPartition(topic, 0)], timeout=10)
        assert (committed.offset, committed.metadata) == (5, "ok"), "a refused commit changed nothing"
    finally:
        c.close()


@pytest.mark.skipif(not java_available(), reason="java is not installed")
def test_java_console_consumer_group_and_consumer_groups_tool(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=3)
    produce(weir.bootstrap, topic, [{"key": b"k%d" % i, "value": b"line-%d" % i} for i in range(60)])
    group = f"java-{uuid.uuid4().hex[:8]}"

    def console(max_messages: int) -> list[str]:
        out = run([str(java_tool("kafka-console-consumer")), "--bootstrap-server", weir.bootstrap,
                   "--topic", topic, "--group", group, "--from-beginning",
                   "--max-messages", str(max_messages), "--timeout-ms", "20000"],
                  timeout=90, env=JAVA_ENV, check=False).stdout
        return [line for line in out.splitlines() if line.startswith("line-")]

    def groups_tool(*args: str) -> str:
        return run([str(java_tool("kafka-consumer-groups")), "--bootstrap-server", weir.bootstrap, *args],
                   timeout=90, env=JAVA_ENV).stdout

    assert sorted(console(60)) == sorted(f"line-{i}" for i in range(60))
    assert group in groups_tool("--list").split()
    described = groups_tool("--describe", "--group", group)
    rows = [line.split() for line in described.splitlines() if line.startswith(group)]
    assert len(rows) == 3 and all(r[5] == "0" for r in rows), f"committed offsets and lag:\n{described}"
    assert sum(int(r[3]) for r in rows) == 60

    groups_tool("--reset-offsets", "--to-earliest", "--execute", "--group", group, "--topic", topic)
    assert len(console(60)) == 60, "after --reset-offsets --to-earliest the group reads everything again"

    deleted = groups_tool("--delete-offsets", "--group", group, "--topic", topic)
    assert "Successful" in deleted
    groups_tool("--delete", "--group", group)
    assert group not in groups_tool("--list").split()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_offsets_expire_after_offsets_retention_minutes(weir_factory, topic):
    w = weir_factory({"offsets.retention.minutes": "1", "offsets.retention.check.interval.ms": "1000"})
    create_topic(w.bootstrap, topic, partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = Consumer(client_conf(w.bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)  # a standalone commit
        assert c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 3
        time.sleep(50)
        assert c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 3, "expired too early"
        deadline = time.monotonic() + 60
        while c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 3:
            assert time.monotonic() < deadline, "the offset never expired"
            time.sleep(2)
    finally:
        c.close()
    w.restart()
    c = Consumer(client_conf(w.bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    try:
        assert c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset < 0, "the expiry was not persisted"
    finally:
        c.close()


def _offset_commit_v2(conn, group: str, generation: int, member: str, topic: str, offset: int) -> int:
    """Sends OffsetCommit v2 by hand; returns the partition's error code."""
    from lib import wire

    body = (wire.string(group) + wire.i32(generation) + wire.string(member) + wire.i64(-1)
            + wire.i32(1) + wire.string(topic) + wire.i32(1) + wire.i32(0) + wire.i64(offset) + wire.string(""))
    r = conn.request(8, 2, body)
    assert r.i32() == 1
    r.string()
    assert r.i32() == 1
    r.i32()
    return r.i16()


def test_bad_group_requests_get_kafkas_codes_and_other_groups_are_untouched(weir, topic):
    from lib import wire
    from lib.weir import HOST

    create_topic(weir.bootstrap, topic, partitions=1)
    good = f"g-{uuid.uuid4().hex[:8]}"
    with wire.Conn(HOST, weir.port) as c:
        assert _offset_commit_v2(c, good, -1, "", topic, 7) == 0, "a standalone commit"
        assert _offset_commit_v2(c, "", -1, "", topic, 1) == 24, "INVALID_GROUP_ID"
        assert _offset_commit_v2(c, good, 3, "nobody", topic, 1) == 25, "UNKNOWN_MEMBER_ID"
        other = f"g-{uuid.uuid4().hex[:8]}"
        assert _offset_commit_v2(c, other, 3, "nobody", topic, 1) == 22, "ILLEGAL_GENERATION for an unknown group"
    c = Consumer(client_conf(weir.bootstrap, **{"group.id": good, "enable.auto.commit": False}))
    try:
        assert c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 7
    finally:
        c.close()
