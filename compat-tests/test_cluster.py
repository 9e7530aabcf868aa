"""A three-node Weir cluster (combined broker+controller nodes, a 3-voter Raft
metadata quorum), driven by real clients.

- Every node lists the three brokers and the same topics (kcat, confluent-kafka);
  a topic created through node 2 is visible through node 3 at once.
- Records produced through one node reach the leaders of every partition and a
  consumer group bootstrapped through another node reads them all and commits;
  the group's coordinator is the leader of its `__consumer_offsets` partition.
- A node that does not lead a partition answers Produce with NOT_LEADER_OR_FOLLOWER,
  and from Produce v10 / Fetch v16 names the leader and its endpoint (KIP-951).
- Until replication exists a partition's ISR is its leader alone.
- kill -9 of the active controller: a new one is elected, topic operations go on
  through the survivors, nothing acknowledged is lost, and the killed node
  catches up when it comes back.
- `kafka-metadata-quorum.sh describe --status` through a follower shows the
  leader and the three voters.
- With `broker.rack` set, a partition's replicas are spread over the racks.

The figures (visibility, failover, catch-up times) are printed for the notes.
"""

from __future__ import annotations

import struct
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicCollection

from lib import wire
from lib.clients import JAVA_ENV, admin, java_available, java_tool, produce, run, unique_topic, wait_until
from lib.cluster import WeirCluster, create_topic, partition_leaders
from lib.weir import HOST


@pytest.fixture
def cluster():
    with WeirCluster(3) as c:
        c.start()
        yield c


def test_every_node_serves_the_same_cluster(cluster):
    for i in (1, 2, 3):
        assert cluster.broker_ids(i) == [1, 2, 3]
        listing = run(["kcat", "-b", cluster.node(i).bootstrap, "-L"], timeout=30).stdout
        for j in (1, 2, 3):
            assert f"broker {j} at {cluster.node(j).bootstrap}" in listing, listing

    topic = unique_topic("cluster")
    created_at = time.monotonic()
    create_topic(cluster.node(2).bootstrap, topic, partitions=6)
    wait_until(lambda: cluster.topics(3).get(topic) == 6, timeout=5, interval=0.02,
               what="the topic created through node 2 to show on node 3")
    print(f"\nvisible through node 3 {1000 * (time.monotonic() - created_at):.0f} ms after CreateTopics was sent")
    # The six partitions are spread over the three brokers, each leader its partition's only replica.
    md = admin(cluster.node(1).bootstrap).list_topics(topic=topic, timeout=10)
    partitions = md.topics[topic].partitions.values()
    assert sorted({p.leader for p in partitions}) == [1, 2, 3]
    assert all(p.isrs == [p.leader] == p.replicas for p in partitions)

    # A replication factor of 3: a new partition's replicas are all in sync (its log is empty), as in KRaft.
    replicated = unique_topic("rf3")
    create_topic(cluster.node(3).bootstrap, replicated, partitions=3, replication_factor=3)
    md = admin(cluster.node(1).bootstrap).list_topics(topic=replicated, timeout=10)
    for p in md.topics[replicated].partitions.values():
        assert sorted(p.replicas) == [1, 2, 3] and p.isrs == p.replicas and p.leader == p.replicas[0]
    # More replicas than brokers is refused, as Kafka refuses it.
    with pytest.raises(Exception, match="INVALID_REPLICATION_FACTOR"):
        create_topic(cluster.node(1).bootstrap, unique_topic("rf4"), partitions=1, replication_factor=4)


def test_records_reach_every_leader_and_a_group_reads_them(cluster):
    topic = unique_topic("spread")
    create_topic(cluster.node(1).bootstrap, topic, partitions=3)
    wait_until(lambda: all(cluster.topics(i).get(topic) == 3 for i in (1, 2, 3)), what="the topic on every node")
    records = [{"key": f"k{i}".encode(), "value": f"v{i}".encode(), "partition": i % 3} for i in range(90)]
    delivered = produce(cluster.node(1).bootstrap, topic, records)
    assert sorted({d.partition for d in delivered}) == [0, 1, 2]

    # Each leader holds its own partition's records, and only the leader takes a write.
    leaders = partition_leaders(cluster.node(1).bootstrap, topic)
    for partition, leader in leaders.items():
        for i in (1, 2, 3):
            with wire.Conn(HOST, cluster.node(i).port) as conn:
                result = wire.produce_v7(conn, topic, partition, wire.record_batch([(None, b"direct")]))
            expected = 0 if i == leader else 6  # NOT_LEADER_OR_FOLLOWER
            assert result.error_code == expected, (partition, leader, i, result)

    group = unique_topic("group")
    consumer = Consumer({
        "bootstrap.servers": cluster.node(3).bootstrap,
        "broker.address.family": "v4",
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    try:
        consumer.subscribe([topic])
        seen = []
        deadline = time.monotonic() + 60
        while len(seen) < 93 and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                seen.append(m)
        assert len(seen) == 93, f"read {len(seen)} of 93 records"
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    a = admin(cluster.node(2).bootstrap)  # kept alive until the answer is in
    committed = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
    assert sorted((tp.partition, tp.offset) for tp in committed.topic_partitions) == [(0, 31), (1, 31), (2, 31)]


def test_a_broker_that_does_not_lead_names_the_leader(cluster):
    # KIP-951: Produce v10+ and Fetch v16+ refused with NOT_LEADER_OR_FOLLOWER carry the
    # leader's id and epoch, and the response the leader's endpoint.
    topic = unique_topic("hinted")
    create_topic(cluster.node(1).bootstrap, topic, partitions=3)
    client = admin(cluster.node(1).bootstrap)  # kept alive until the answer is in
    described = client.describe_topics(TopicCollection([topic]))[topic].result(timeout=30)
    topic_id = struct.pack(">qq", described.topic_id.get_most_significant_bits(),
                           described.topic_id.get_least_significant_bits())
    leaders = partition_leaders(cluster.node(1).bootstrap, topic)
    for partition, leader in leaders.items():
        for i in (1, 2, 3):
            with wire.Conn(HOST, cluster.node(i).port) as conn:
                produced = wire.produce_v10(conn, topic, partition, wire.record_batch([(None, b"hinted")]))
                fetched = wire.fetch_v16(conn, topic_id, partition, 0)
            if i == leader:
                assert (produced.error_code, produced.leader_id, produced.endpoints) == (0, -1, {}), produced
                assert (fetched.error_code, fetched.leader_id, fetched.endpoints) == (0, -1, {}), fetched
                continue
            for hint in (produced, fetched):
                assert hint.error_code == 6, (partition, leader, i, hint)  # NOT_LEADER_OR_FOLLOWER
                assert (hint.leader_id, hint.leader_epoch) == (leader, 0), hint
                assert hint.endpoints == {leader: (HOST, cluster.node(leader).port)}, hint


def test_active_controller_kill9_fails_over_and_loses_nothing(cluster):
    before = [unique_topic("before") for _ in range(5)]
    for name in before:
        create_topic(cluster.node(1).bootstrap, name, partitions=2)
    victim = cluster.active_controller()
    survivors = [i for i in (1, 2, 3) if i != victim]

    cluster.node(victim).kill9()
    killed_at = time.monotonic()
    after = unique_topic("after")

    def create_after():
        create_topic(cluster.bootstrap(exclude=(victim,)), after, partitions=1, timeout=3)
        return True

    # The figure is printed, not asserted: elections usually take 3-4 s, but rare ones take far
    # longer (see the cluster issue's notes), and this test is about losing nothing.
    new_controller = cluster.active_controller(via=survivors[0], timeout=60)
    elected_s = time.monotonic() - killed_at
    assert new_controller in survivors
    wait_until(create_after, timeout=60, interval=0.1, what="CreateTopics to work through the survivors")
    failover_s = time.monotonic() - killed_at
    print(f"\nactive controller {victim} killed; node {new_controller} reported active after {elected_s:.2f} s; "
          f"CreateTopics answered again after {failover_s:.2f} s")
    for i in survivors:
        topics = cluster.topics(i)
        assert all(name in topics for name in before + [after]), (i, sorted(topics))

    cluster.node(victim).start()
    restarted_at = time.monotonic()
    wait_until(lambda: all(n in cluster.topics(victim) for n in before + [after]), timeout=30, interval=0.05,
               what="the restarted node to catch up")
    print(f"restarted node {victim} served every topic {time.monotonic() - restarted_at:.2f} s after it was ready")
    assert cluster.broker_ids(victim) == [1, 2, 3]


@pytest.mark.java
@pytest.mark.skipif(not java_available(), reason="java is not installed")
def test_metadata_quorum_tool_through_a_follower(cluster):
    leader = cluster.active_controller()
    follower = next(i for i in (1, 2, 3) if i != leader)
    tool = [str(java_tool("kafka-metadata-quorum")), "--bootstrap-server", cluster.node(follower).bootstrap,
            "describe", "--status"]
    status = dict((k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in
                                                       run(tool, env=JAVA_ENV).stdout.splitlines() if ":" in line))
    assert status["LeaderId"] == str(leader)
    assert all(f'"id": {i}' in status["CurrentVoters"] for i in (1, 2, 3)), status["CurrentVoters"]
    assert int(status["HighWatermark"]) > 0

    topic = unique_topic("described")
    create_topic(cluster.node(leader).bootstrap, topic, partitions=3, replication_factor=3)
    described = run([str(java_tool("kafka-topics")), "--bootstrap-server", cluster.node(follower).bootstrap,
                     "--describe", "--topic", topic], env=JAVA_ENV).stdout
    lines = [line for line in described.splitlines() if "Partition:" in line]
    assert len(lines) == 3, described
    for line in lines:
        fields = dict(part.split(": ", 1) for part in line.strip().split("\t") if ": " in part)
        assert sorted(fields["Replicas"].split(",")) == ["1", "2", "3"], line
        assert sorted(fields["Isr"].split(",")) == ["1", "2", "3"] and fields["Leader"] in fields["Isr"], line


def _fenced_after(cluster: WeirCluster, node_id: int, watcher: int, timeout: float) -> float:
    """Seconds until `watcher` no longer lists broker `node_id` in Metadata."""
    started = time.monotonic()
    wait_until(lambda: node_id not in cluster.broker_ids(watcher), timeout=timeout, interval=0.05,
               what=f"broker {node_id} to leave node {watcher}'s Metadata")
    return time.monotonic() - started


def test_brokers_are_fenced_by_session_timeout_and_controlled_shutdown():
    # A short session (Kafka's defaults are 2 s heartbeats, 9 s sessions) keeps the test quick.
    with WeirCluster(3, overrides={"broker.heartbeat.interval.ms": 300, "broker.session.timeout.ms": 2000}) as cluster:
        cluster.start()
        topic = unique_topic("fenced")
        create_topic(cluster.node(1).bootstrap, topic, partitions=3)
        leaders = partition_leaders(cluster.node(1).bootstrap, topic)

        # SIGSTOP: the paused broker stops heartbeating; the controller fences it and its
        # partitions lose their leader (their ISR is the broker alone). Not the active
        # controller, so the quorum keeps its leader.
        controller = cluster.active_controller()
        paused = next(i for i in (1, 2, 3) if i != controller)
        watcher = next(i for i in (1, 2, 3) if i not in (paused,))
        cluster.node(paused).pause()
        fenced_s = _fenced_after(cluster, paused, watcher, timeout=30)
        assert fenced_s >= 1.0, f"fenced {fenced_s:.2f} s after the pause, before its session could expire"
        print(f"\npaused broker {paused} left Metadata after {fenced_s:.2f} s (session timeout 2 s)")
        orphaned = [p for p, leader in leaders.items() if leader == paused]
        now = partition_leaders(cluster.node(watcher).bootstrap, topic)
        assert all(now[p] == -1 for p in orphaned), now
        # Resumed: its next heartbeat unfences it and it leads its partitions again.
        cluster.node(paused).resume()
        wait_until(lambda: paused in cluster.broker_ids(watcher), timeout=30, interval=0.05,
                   what=f"broker {paused} back in Metadata")
        wait_until(lambda: partition_leaders(cluster.node(watcher).bootstrap, topic) == leaders, timeout=30,
                   what="the resumed broker to lead its partitions again")

        # SIGTERM: a controlled shutdown fences the broker before it exits, well within its session.
        stopping = paused
        started = time.monotonic()
        assert cluster.node(stopping).stop() == 0
        assert stopping not in cluster.broker_ids(watcher), "controlled shutdown did not fence the broker"
        print(f"broker {stopping} stopped with SIGTERM; fenced and gone in {time.monotonic() - started:.2f} s")

        # kill -9: gone from Metadata once its session expires.
        victim = next(i for i in (1, 2, 3) if i not in (stopping, controller))
        assert victim != stopping
        cluster.node(stopping).start()
        cluster.node(victim).kill9()
        watcher = controller
        print(f"killed broker {victim} left Metadata after {_fenced_after(cluster, victim, watcher, 30):.2f} s")


def test_replicas_are_placed_across_racks():
    with WeirCluster(3, name="racks") as cluster:
        racks = {1: "east", 2: "east", 3: "west"}
        for i, rack in racks.items():
            cluster.node(i).overrides["broker.rack"] = rack
        cluster.start()
        client = admin(cluster.node(2).bootstrap)  # kept alive until the answer is in
        described = client.describe_cluster(request_timeout=10).result(timeout=10)
        assert {n.id: n.rack for n in described.nodes} == racks
        topic = unique_topic("racked")
        create_topic(cluster.node(2).bootstrap, topic, partitions=6, replication_factor=2)
        md = admin(cluster.node(1).bootstrap).list_topics(topic=topic, timeout=10)
        placed = {p.id: (p.leader, p.replicas) for p in md.topics[topic].partitions.values()}
        # Two racks, two replicas: every partition has one in each, so the lone broker of
        # rack west is in all of them; leadership still spreads over the three brokers.
        for leader, replicas in placed.values():
            assert sorted(racks[r] for r in replicas) == ["east", "west"], placed
        assert sorted(leader for leader, _ in placed.values()) == [1, 1, 2, 2, 3, 3], placed
