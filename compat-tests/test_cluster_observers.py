"""Broker-only nodes (`process.roles=broker`): three voters and a fourth node
that is only a broker, reaching the quorum through
`controller.quorum.bootstrap.servers`, as a KRaft observer.

- The broker-only node registers, is unfenced once caught up, and is a broker
  like the others: every node lists four brokers, partitions are placed on it,
  topics created through it reach every node, records produced through it
  reach every leader and a consumer group reads them back through it.
- DescribeQuorum (`kafka-metadata-quorum.sh describe --replication`) lists it
  as an observer with its log end offset and fetch timestamps, and the
  followers' fetch and caught-up timestamps.
- kill -9 of the active controller: the observer finds the new leader, and
  CreateTopics through it works again after the election.
- kill -9 of the observer: it is fenced after its session; restarted, it
  fetches the metadata again (it stores no log), catches up with what was
  created meanwhile and is unfenced.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer

from lib.clients import JAVA_ENV, java_available, java_tool, produce, run, unique_topic, wait_until
from lib.cluster import WeirCluster, create_topic, create_topic_through_failover, partition_leaders
from lib.weir import HOST, WeirError

OBSERVER = 4


@pytest.fixture
def cluster():
    overrides = {"broker.heartbeat.interval.ms": 300, "broker.session.timeout.ms": 2000}
    with WeirCluster(3, brokers=1, overrides=overrides, name="observers") as c:
        c.start()
        yield c


def test_a_broker_only_node_is_a_broker_like_the_others(cluster):
    observer = cluster.node(OBSERVER)
    for i in (1, 2, 3, OBSERVER):
        assert cluster.broker_ids(i) == [1, 2, 3, OBSERVER]
    listing = run(["kcat", "-b", observer.bootstrap, "-L"], timeout=30).stdout
    for j in (1, 2, 3, OBSERVER):
        assert f"broker {j} at {cluster.node(j).bootstrap}" in listing, listing

    # Created through the observer: placed on all four brokers, seen everywhere.
    topic = unique_topic("observed")
    created_at = time.monotonic()
    create_topic(observer.bootstrap, topic, partitions=8, replication_factor=2)
    for i in (1, 2, 3):
        wait_until(lambda i=i: cluster.topics(i).get(topic) == 8, timeout=10, interval=0.01,
                   what=f"the topic on node {i}")
    print(f"\ntopic created through broker-only node {OBSERVER} seen on every voter after "
          f"{time.monotonic() - created_at:.3f} s")
    leaders = partition_leaders(cluster.node(2).bootstrap, topic)
    assert sorted(set(leaders.values())) == [1, 2, 3, OBSERVER], leaders

    # And one created through a voter reaches the observer.
    other = unique_topic("from-voter")
    created_at = time.monotonic()
    create_topic(cluster.node(1).bootstrap, other, partitions=1)
    wait_until(lambda: other in cluster.topics(OBSERVER), timeout=10, interval=0.01, what="the topic on the observer")
    print(f"topic created through node 1 seen on the observer after {time.monotonic() - created_at:.3f} s")

    # Records produced through the observer reach every leader; a group reads them back through it.
    values = [f"record-{n}".encode() for n in range(120)]
    delivered = produce(observer.bootstrap, topic, [{"value": v, "partition": n % 8} for n, v in enumerate(values)])
    assert sorted({d.partition for d in delivered}) == list(range(8)), "records reached every partition"
    consumer = Consumer({"bootstrap.servers": observer.bootstrap, "group.id": unique_topic("group"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        seen: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(seen) < len(values) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                seen.append(message.value())
        assert sorted(seen) == sorted(values)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()


@pytest.mark.java
@pytest.mark.skipif(not java_available(), reason="java is not installed")
def test_describe_quorum_lists_the_observer_and_the_voters_fetch_times(cluster):
    tool = [str(java_tool("kafka-metadata-quorum")), "--bootstrap-server", cluster.node(OBSERVER).bootstrap,
            "describe", "--replication"]
    started_ms = time.time() * 1000

    def rows():
        table = run(tool, env=JAVA_ENV).stdout.splitlines()
        return {int(line.split()[0]): line.split() for line in table[1:] if line.split() and line.split()[0].isdigit()}

    # The leader hears from the observer every fetch (500 ms long polls).
    wait_until(lambda: OBSERVER in rows(), timeout=30, interval=0.2, what="the observer in DescribeQuorum")
    replicas = rows()
    leader_row = next(r for r in replicas.values() if r[-1] == "Leader")
    observer_row = replicas[OBSERVER]
    assert observer_row[-1] == "Observer", observer_row
    # NodeId DirectoryId LogEndOffset Lag LastFetchTimestamp LastCaughtUpTimestamp Status
    assert int(observer_row[2]) > 0 and int(leader_row[2]) - int(observer_row[2]) <= 2, (leader_row, observer_row)
    assert int(observer_row[4]) >= started_ms - 10_000 and int(observer_row[5]) > 0, observer_row
    assert sorted(i for i, r in replicas.items() if r[-1] in ("Leader", "Follower")) == [1, 2, 3]
    # The followers answer the leader's AppendEntries every heartbeat (200 ms), holding all its log.
    for row in replicas.values():
        if row[-1] == "Follower":
            assert int(row[4]) >= started_ms - 10_000 and int(row[5]) >= started_ms - 10_000, row


def test_the_observer_follows_a_new_leader_and_comes_back_after_kill9(cluster):
    observer = cluster.node(OBSERVER)
    victim = cluster.active_controller()
    cluster.node(victim).kill9()
    killed_at = time.monotonic()
    after = unique_topic("after-failover")

    # Printed, not asserted: elections take 2.5-4.5 s.
    failed_attempts = create_topic_through_failover(observer.bootstrap, after, partitions=2)
    print(f"\nactive controller {victim} killed; CreateTopics through the observer answered after "
          f"{time.monotonic() - killed_at:.2f} s ({len(failed_attempts)} failed attempts: {failed_attempts})")
    survivors = [i for i in (1, 2, 3) if i != victim]
    for i in survivors + [OBSERVER]:
        assert after in cluster.topics(i), i
    cluster.node(victim).start()

    # The observer killed: fenced once its session expires; restarted, it fetches
    # everything again, including what was created while it was down.
    observer.kill9()
    watcher = survivors[0]
    wait_until(lambda: OBSERVER not in cluster.broker_ids(watcher), timeout=30, interval=0.05,
               what="the killed observer to be fenced")
    while_down = unique_topic("while-down")
    create_topic(cluster.node(watcher).bootstrap, while_down, partitions=3)
    restarted_at = time.monotonic()
    observer.start()
    print(f"killed observer restarted, serving and unfenced after {time.monotonic() - restarted_at:.2f} s")
    assert while_down in cluster.topics(OBSERVER) and after in cluster.topics(OBSERVER)
    wait_until(lambda: OBSERVER in cluster.broker_ids(watcher), timeout=30, interval=0.05,
               what="the restarted observer to be unfenced")


def test_a_broker_only_node_that_names_itself_a_voter_is_refused():
    with WeirCluster(3, brokers=1, name="refused") as cluster:
        node = cluster.node(OBSERVER)
        node.overrides["controller.quorum.voters"] = f"{OBSERVER}@{HOST}:{cluster.controller_ports[1]}"
        with pytest.raises(WeirError):
            node.start()
        assert not node.alive()
        assert "a broker-only node must not be a voter" in node.log_path.read_text(errors="replace")
