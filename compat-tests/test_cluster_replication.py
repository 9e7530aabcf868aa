"""Replication on a Weir cluster (issue 11): replica fetchers, the ISR, the high
watermark, acks=all, and failover that loses no acknowledged record.

- `kafka-topics.sh --create --replication-factor 3 --partitions 6 --config
  min.insync.replicas=2`: followers copy the leaders' logs and join the ISR;
  `--describe` prints each partition's leader, replicas and ISR.
- An idempotent acks=all producer writes while the leader of its partitions
  is killed with kill -9: the producer goes on (NOT_LEADER_OR_FOLLOWER, a
  metadata refresh, the new leader) without an error reaching the
  application, and every acknowledged record is read back at its offset, once.
  The killed broker restarts, catches up and rejoins the ISR.
- The group coordinator follows its `__consumer_offsets` partition's
  leadership: kill -9 of the coordinator, and the new leader serves the
  committed offsets; the group reads on without losing or repeating a record.
- With both followers of a partition down (the quorum on three other
  voters), the ISR shrinks to the leader: acks=all gets NOT_ENOUGH_REPLICAS,
  acks=1 is still accepted, and consumers read up to the high watermark.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from lib.clients import (JAVA_ENV, BackgroundProducer, admin, assert_read_back, client_conf, consume_assigned,
                         java_available, java_tool, run, unique_topic, wait_until)
from lib import wire
from lib.cluster import WeirCluster, group_coordinator
from lib.weir import HOST

FAST = {"broker.heartbeat.interval.ms": 300, "broker.session.timeout.ms": 2000}


def isr_by_partition(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]]:
    md = admin(bootstrap).list_topics(topic=topic, timeout=10)
    return {p.id: (p.leader, sorted(p.isrs)) for p in md.topics[topic].partitions.values()}


def wait_for_isr(bootstrap: str, topic: str, size: int, timeout: float = 30.0) -> dict:
    last: dict = {}

    def full() -> bool:
        nonlocal last
        last = isr_by_partition(bootstrap, topic)
        return bool(last) and all(len(isr) == size for _, isr in last.values())

    wait_until(full, timeout=timeout, interval=0.2, what=f"ISRs of {topic} at {size}: last {last}")
    return last


@pytest.fixture
def cluster():
    with WeirCluster(3, overrides=FAST, name="replication") as c:
        c.start()
        yield c


@pytest.mark.skipif(not java_available(), reason="needs Java for kafka-topics.sh")
def test_kafka_topics_creates_replicated_topics_and_describes_their_isr(cluster):
    topic = unique_topic("replicated")
    tool = str(java_tool("kafka-topics"))
    bootstrap = cluster.bootstrap()
    run([tool, "--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", "6",
         "--replication-factor", "3", "--config", "min.insync.replicas=2"], timeout=60, env=JAVA_ENV)
    started = time.monotonic()
    wait_for_isr(bootstrap, topic, 3)
    print(f"\nall six ISRs full after {time.monotonic() - started:.2f} s")
    out = run([tool, "--bootstrap-server", bootstrap, "--describe", "--topic", topic], timeout=60, env=JAVA_ENV).stdout
    lines = [line for line in out.splitlines() if "Partition:" in line]
    assert len(lines) == 6, out
    for line in lines:
        fields = dict(part.split(": ", 1) for part in line.strip().split("\t") if ": " in part)
        replicas = sorted(int(r) for r in fields["Replicas"].split(","))
        assert replicas == [1, 2, 3], line
        assert sorted(int(r) for r in fields["Isr"].split(",")) == [1, 2, 3], line
        assert int(fields["Leader"]) in replicas, line
    assert "min.insync.replicas=2" in out, out


def test_acks_all_survives_kill_of_the_leader_and_the_broker_rejoins(cluster):
    topic = unique_topic("failover")
    bootstrap = cluster.bootstrap()
    client = admin(bootstrap)  # kept alive until the answer is in
    client.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
    wait_for_isr(bootstrap, topic, 3)

    with BackgroundProducer(bootstrap, topic) as writer:
        wait_until(lambda: len(writer.acked) >= 300, timeout=30, what="records acknowledged before the kill")
        victim = isr_by_partition(bootstrap, topic)[0][0]
        before = len(writer.acked)
        cluster.node(victim).kill9()
        killed_at = time.monotonic()
        survivors = cluster.bootstrap()
        wait_until(lambda: len(writer.acked) >= before + 300, timeout=60, what="records acknowledged after the kill")
        print(f"\nkilled leader {victim}; 300 more records acknowledged after {time.monotonic() - killed_at:.2f} s")
        leaders = isr_by_partition(survivors, topic)
        assert all(leader != victim and victim not in isr for leader, isr in leaders.values()), leaders

        cluster.node(victim).start()
        restarted_at = time.monotonic()
        wait_for_isr(cluster.bootstrap(), topic, 3, timeout=60)
        print(f"broker {victim} back in every ISR {time.monotonic() - restarted_at:.2f} s after its restart")
    assert not writer.errors, writer.errors[:5]
    assert_read_back(cluster.bootstrap(), topic, writer.acked)
    print(f"{len(writer.acked)} records acknowledged, every one read back at its offset")
    # Followers fetch through KIP-227 sessions, made again with a restarted or new leader and
    # never lost to a wrong epoch or an unknown id.
    for node in cluster.nodes.values():
        log = node.log_path.read_text(errors="replace")
        assert "replica fetch session established" in log, node.tail(40)
        assert "replica fetch session lost" not in log, node.tail(80)


def test_without_enough_replicas_acks_all_is_refused_and_acks_1_goes_on():
    # Voters 1-3 keep the quorum; the partition lives on broker-only nodes 4 and 5 and on voter 1.
    with WeirCluster(3, brokers=2, overrides=FAST, name="min-isr") as c:
        c.start()
        topic = unique_topic("min-isr")
        bootstrap = c.bootstrap()
        client = admin(bootstrap)  # kept alive until the answer is in
        new = NewTopic(topic, num_partitions=1, replica_assignment=[[1, 4, 5]], config={"min.insync.replicas": "2"})
        client.create_topics([new])[topic].result(30)
        wait_for_isr(bootstrap, topic, 3)
        p = Producer(client_conf(bootstrap, **{"acks": "all", "message.timeout.ms": 20000}))
        p.produce(topic, value=b"before")
        assert p.flush(30) == 0

        c.node(4).kill9()
        c.node(5).kill9()
        wait_until(lambda: isr_by_partition(c.bootstrap(), topic)[0][1] == [1], timeout=30,
                   what="the ISR shrinking to the leader")

        failures: list[KafkaError] = []
        p = Producer(client_conf(c.bootstrap(), **{"acks": "all", "message.timeout.ms": 5000, "retries": 0}))
        p.produce(topic, value=b"refused", on_delivery=lambda err, msg: failures.append(err))
        p.flush(30)
        assert failures and failures[0] is not None, failures
        assert failures[0].code() == KafkaError.NOT_ENOUGH_REPLICAS, failures[0]

        p1 = Producer(client_conf(c.bootstrap(), **{"acks": "1"}))
        delivered: list = []
        p1.produce(topic, value=b"acks-1", on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
        p1.flush(30)
        assert delivered and delivered[0][0] is None, delivered
        # Alone in the ISR, the leader commits what it has: consumers read both records.
        got = consume_assigned(c.bootstrap(), topic, [0], 2, timeout=30)
        assert [m.value() for m in got] == [b"before", b"acks-1"]


def test_the_group_coordinator_moves_with_its_offsets_partition(cluster):
    """Kill -9 of a group's coordinator: the new leader of the group's
    `__consumer_offsets` partition loads it and serves the committed offsets;
    brokers that do not lead it answer NOT_COORDINATOR."""
    topic, group = unique_topic("grouped"), unique_topic("group")
    bootstrap = cluster.bootstrap()
    client = admin(bootstrap)
    client.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
    p = Producer(client_conf(bootstrap, **{"acks": "all", "enable.idempotence": True}))
    for i in range(3000):
        p.produce(topic, value=f"value-{i}".encode(), partition=i % 3)
    assert p.flush(60) == 0

    conf = {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    first = Consumer(client_conf(bootstrap, **conf))
    first.subscribe([topic])
    seen: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(seen) < 1500 and time.monotonic() < deadline:
        m = first.poll(0.5)
        if m is not None and m.error() is None:
            seen.append(m.value())
    first.commit(asynchronous=False)
    wanted = [TopicPartition(topic, i) for i in range(3)]
    committed = {tp.partition: tp.offset for tp in first.committed(wanted, timeout=10)}
    first.close()
    assert sum(o for o in committed.values() if o >= 0) == len(seen), (committed, len(seen))

    coordinator = group_coordinator(bootstrap, group)
    for node in (1, 2, 3):
        with wire.Conn(HOST, cluster.node(node).port) as conn:
            code = wire.heartbeat_v0(conn, group, 1, "nobody")
        assert code == (KafkaError.UNKNOWN_MEMBER_ID if node == coordinator else KafkaError.NOT_COORDINATOR), (node, code)

    cluster.node(coordinator).kill9()
    killed_at = time.monotonic()
    second = Consumer(client_conf(cluster.bootstrap(), **conf))
    try:
        wait_until(lambda: {tp.partition: tp.offset for tp in second.committed(wanted, timeout=5)} == committed,
                   timeout=60, interval=0.5, what="the committed offsets from the new coordinator")
        print(f"\ncoordinator {coordinator} killed; its successor served the committed offsets after "
              f"{time.monotonic() - killed_at:.2f} s")
        second.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(seen) < 3000 and time.monotonic() < deadline:
            m = second.poll(0.5)
            if m is not None and m.error() is None:
                seen.append(m.value())
        extra = second.consume(num_messages=10, timeout=1.0)
        seen.extend(m.value() for m in extra if m.error() is None)
    finally:
        second.close()
    assert sorted(seen) == sorted(f"value-{i}".encode() for i in range(3000)), "every record read once across the failover"


def test_a_stalled_follower_leaves_the_isr_on_lag_and_rejoins():
    """SIGSTOP of a follower for longer than `replica.lag.time.max.ms` but
    within its session: the leader drops it from the ISR (AlterPartition) and
    acks=all goes on with the other two; SIGCONT, and it catches up and
    rejoins. Voters 1-3 keep the quorum; the partition is on 1, 4 and 5."""
    overrides = {"broker.heartbeat.interval.ms": 300, "broker.session.timeout.ms": 60000,
                 "replica.lag.time.max.ms": 3000}
    with WeirCluster(3, brokers=2, overrides=overrides, name="lagging") as c:
        c.start()
        topic = unique_topic("lagging")
        client = admin(c.bootstrap())  # kept alive until the answer is in
        new = NewTopic(topic, num_partitions=1, replica_assignment=[[1, 4, 5]], config={"min.insync.replicas": "2"})
        client.create_topics([new])[topic].result(30)
        wait_for_isr(c.bootstrap(), topic, 3)
        p = Producer(client_conf(c.bootstrap(), **{"acks": "all", "enable.idempotence": True,
                                                   "message.timeout.ms": 30000}))
        for i in range(100):
            p.produce(topic, value=f"before-{i}".encode())
        assert p.flush(30) == 0

        c.node(5).pause()
        try:
            paused = time.monotonic()
            wait_until(lambda: isr_by_partition(c.bootstrap(), topic)[0][1] == [1, 4], timeout=30, interval=0.2,
                       what="the stalled follower dropped from the ISR")
            print(f"\nbroker 5 left the ISR {time.monotonic() - paused:.2f} s after SIGSTOP "
                  f"(replica.lag.time.max.ms 3000)")
            assert 5 in c.broker_ids(1), "still registered: the ISR shrank on lag, not by fencing"
            for i in range(100):
                p.produce(topic, value=f"during-{i}".encode())
            assert p.flush(30) == 0, "acks=all goes on with two in-sync replicas"
        finally:
            c.node(5).resume()
        resumed = time.monotonic()
        wait_for_isr(c.bootstrap(), topic, 3, timeout=60)
        print(f"broker 5 back in the ISR {time.monotonic() - resumed:.2f} s after SIGCONT")
        got = consume_assigned(c.bootstrap(), topic, [0], 200, timeout=30)
        expected = [f"before-{i}".encode() for i in range(100)] + [f"during-{i}".encode() for i in range(100)]
        assert [m.value() for m in got] == expected
