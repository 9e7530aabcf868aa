"""Dedicated controllers (`process.roles=controller`): three controller-only
voters that serve no clients, and two broker-only nodes that follow them, the
layout Kafka recommends for production KRaft clusters.

- The brokers list only each other: the controllers register no broker and
  get no partition; topics created through either broker are placed on both.
- `kafka-metadata-quorum.sh describe --replication` through a broker lists
  the three controllers as voters and the two brokers as observers.
- kill -9 of the active controller: the other two elect a new one, and
  CreateTopics through the brokers works again; nothing acknowledged is lost.
- A controller-only node given a client listener is refused at start.
"""

from __future__ import annotations

import time

import pytest

from lib.clients import JAVA_ENV, java_available, java_tool, produce, run, unique_topic, wait_until
from lib.cluster import WeirCluster, create_topic, create_topic_through_failover, partition_leaders
from lib.weir import HOST, WeirError

BROKERS = (4, 5)


@pytest.fixture
def cluster():
    overrides = {"broker.heartbeat.interval.ms": 300, "broker.session.timeout.ms": 2000}
    with WeirCluster(3, brokers=2, dedicated_controllers=True, overrides=overrides, name="dedicated") as c:
        c.start()
        yield c


def test_brokers_serve_and_controllers_only_vote(cluster):
    for i in BROKERS:
        assert cluster.broker_ids(i) == list(BROKERS)
    listing = run(["kcat", "-b", cluster.node(4).bootstrap, "-L"], timeout=30).stdout
    assert " 2 brokers:" in listing, listing
    topic = unique_topic("dedicated")
    create_topic(cluster.node(4).bootstrap, topic, partitions=4, replication_factor=2)
    wait_until(lambda: cluster.topics(5).get(topic) == 4, timeout=10, interval=0.01, what="the topic on broker 5")
    assert sorted(set(partition_leaders(cluster.node(5).bootstrap, topic).values())) == list(BROKERS)
    delivered = produce(cluster.node(5).bootstrap, topic, [{"value": b"v%d" % n, "partition": n % 4} for n in range(40)])
    assert sorted({d.partition for d in delivered}) == [0, 1, 2, 3]


@pytest.mark.java
@pytest.mark.skipif(not java_available(), reason="java is not installed")
def test_describe_quorum_lists_controllers_as_voters_and_brokers_as_observers(cluster):
    tool = [str(java_tool("kafka-metadata-quorum")), "--bootstrap-server", cluster.node(5).bootstrap,
            "describe", "--replication"]

    def statuses():
        table = run(tool, env=JAVA_ENV).stdout.splitlines()
        return {int(line.split()[0]): line.split()[-1] for line in table[1:] if line.split()[:1] != []}

    wait_until(lambda: all(i in statuses() for i in BROKERS), timeout=30, interval=0.2,
               what="both brokers in DescribeQuorum")
    status = statuses()
    assert sorted(i for i, s in status.items() if s in ("Leader", "Follower")) == [1, 2, 3], status
    assert [status[i] for i in BROKERS] == ["Observer", "Observer"], status


def test_active_controller_kill9_and_the_brokers_go_on(cluster):
    before = unique_topic("before")
    create_topic(cluster.node(4).bootstrap, before, partitions=2, replication_factor=2)
    victim = cluster.active_controller(via=4)
    assert victim in (1, 2, 3)
    cluster.node(victim).kill9()
    killed_at = time.monotonic()
    after = unique_topic("after")
    # Printed, not asserted: elections take 2.5-4.5 s.
    failed_attempts = create_topic_through_failover(cluster.node(5).bootstrap, after, partitions=2)
    print(f"\nactive controller {victim} killed; CreateTopics through broker 5 answered after "
          f"{time.monotonic() - killed_at:.2f} s ({len(failed_attempts)} failed attempts)")
    new_controller = cluster.active_controller(via=4)
    assert new_controller in (1, 2, 3) and new_controller != victim
    for i in BROKERS:
        topics = cluster.topics(i)
        assert before in topics and after in topics, (i, sorted(topics))
        assert cluster.broker_ids(i) == list(BROKERS)
    cluster.node(victim).start()
    wait_until(lambda: cluster.active_controller(via=5) in (1, 2, 3), timeout=30, what="a controller after the restart")


def test_a_controller_only_node_with_a_client_listener_is_refused():
    with WeirCluster(3, dedicated_controllers=True, name="refused-controller") as cluster:
        node = cluster.node(1)
        node.overrides["listeners"] = f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{cluster.controller_ports[1]}"
        with pytest.raises(WeirError):
            node.start()
        assert not node.alive()
        assert "a controller-only node serves only its controller listener" in node.log_path.read_text(errors="replace")
