"""Leader elections on a Weir cluster (issue 11): Kafka's own
`kafka-leader-election.sh` (ElectLeaders, preferred and unclean), the auto
leader rebalance, and a returning old leader that truncates what diverged.

- After a kill -9 and restart, the preferred replica is back in the ISR but
  does not lead; `kafka-leader-election --election-type PREFERRED` moves
  leadership back, and a second run finds nothing to do.
- With `auto.leader.rebalance.enable` (Kafka's default) and a short
  `leader.imbalance.check.interval.seconds`, leadership returns by itself.
- Unclean election: the follower is killed, the leader accepts acks=1 writes
  alone, then dies too. The follower returns; with unclean election off the
  partition stays offline (LEADER_NOT_AVAILABLE, the dead leader in
  `offline_replicas`). `--election-type UNCLEAN` makes the follower leader
  (ISR = itself); new writes are accepted. The old leader returns, is told
  its log diverged (its last epoch ends earlier on the new leader),
  truncates the records only it had, copies the new leader's and rejoins the
  ISR: afterwards both replicas hold the same records.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import NewTopic

from lib.clients import (JAVA_ENV, admin, client_conf, consume_assigned, java_available, java_tool, run,
                         unique_topic, wait_until)
from lib import wire
from lib.cluster import WeirCluster
from lib.weir import HOST

FAST = {"broker.heartbeat.interval.ms": 300, "broker.session.timeout.ms": 2000}

pytestmark = [
    pytest.mark.java,
    pytest.mark.skipif(not java_available(), reason="needs Java for kafka-leader-election.sh"),
]


def partitions(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """Per partition: leader, replicas, ISR."""
    md = admin(bootstrap).list_topics(topic=topic, timeout=10)
    return {p.id: (p.leader, list(p.replicas), sorted(p.isrs)) for p in md.topics[topic].partitions.values()}


def leader_election(bootstrap: str, *args: str) -> str:
    tool = str(java_tool("kafka-leader-election"))
    out = run([tool, "--bootstrap-server", bootstrap, *args], timeout=60, env=JAVA_ENV, check=False)
    return out.stdout + out.stderr


def fail_over_and_return(c: WeirCluster, topic: str, node: int) -> None:
    """Kills `node` (the preferred leader of partition 0), restarts it and
    waits until it is back in every ISR: it then leads nothing it prefers."""
    c.node(node).kill9()
    wait_until(lambda: partitions(c.bootstrap(), topic)[0][0] not in (-1, node), timeout=30,
               what="another leader for partition 0")
    c.node(node).start()
    wait_until(lambda: all(len(isr) == 3 for _, _, isr in partitions(c.bootstrap(), topic).values()), timeout=60,
               what=f"broker {node} back in every ISR")


def test_preferred_election_with_kafka_leader_election():
    with WeirCluster(3, overrides={**FAST, "auto.leader.rebalance.enable": "false"}, name="preferred") as c:
        c.start()
        topic = unique_topic("preferred")
        client = admin(c.bootstrap())
        new = NewTopic(topic, num_partitions=3, replica_assignment=[[1, 2, 3], [2, 3, 1], [3, 1, 2]])
        client.create_topics([new])[topic].result(30)
        wait_until(lambda: all(len(isr) == 3 for _, _, isr in partitions(c.bootstrap(), topic).values()),
                   timeout=30, what="full ISRs")
        fail_over_and_return(c, topic, 1)
        assert partitions(c.bootstrap(), topic)[0][0] != 1

        out = leader_election(c.bootstrap(), "--election-type", "PREFERRED", "--topic", topic, "--partition", "0")
        print(f"\n{out}")
        assert f"Successfully completed leader election (PREFERRED) for partitions {topic}-0" in out, out
        assert partitions(c.bootstrap(), topic)[0][0] == 1
        out = leader_election(c.bootstrap(), "--election-type", "PREFERRED", "--topic", topic, "--partition", "0")
        assert f"Valid replica already elected for partitions {topic}-0" in out, out
        # Every partition: nothing left to elect, nothing reported as failed.
        out = leader_election(c.bootstrap(), "--election-type", "PREFERRED", "--all-topic-partitions")
        assert "Error" not in out and "failed" not in out, out
        assert {p: leader for p, (leader, _, _) in partitions(c.bootstrap(), topic).items()} == {0: 1, 1: 2, 2: 3}


def test_auto_leader_rebalance_returns_leadership_to_the_preferred_replica():
    overrides = {**FAST, "leader.imbalance.check.interval.seconds": 1}
    with WeirCluster(3, overrides=overrides, name="rebalance") as c:
        c.start()
        topic = unique_topic("rebalance")
        client = admin(c.bootstrap())
        client.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2, 3]])])[topic].result(30)
        wait_until(lambda: len(partitions(c.bootstrap(), topic)[0][2]) == 3, timeout=30, what="a full ISR")
        c.node(1).kill9()
        wait_until(lambda: partitions(c.bootstrap(), topic)[0][0] not in (-1, 1), timeout=30, what="a new leader")
        c.node(1).start()
        restarted = time.monotonic()
        wait_until(lambda: partitions(c.bootstrap(), topic)[0][0] == 1, timeout=60,
                   what="leadership back on the preferred replica")
        print(f"\nbroker 1 leads again {time.monotonic() - restarted:.2f} s after its restart")


def produce(bootstrap: str, topic: str, values: list[bytes], acks: str) -> list[int]:
    offsets: list = []
    p = Producer(client_conf(bootstrap, **{"acks": acks, "message.timeout.ms": 20000}))
    for v in values:
        p.produce(topic, value=v, partition=0,
                  on_delivery=lambda err, msg: offsets.append(err if err is not None else msg.offset()))
    assert p.flush(30) == 0
    assert all(isinstance(o, int) for o in offsets), offsets
    return offsets


def test_unclean_election_and_the_old_leader_truncates_what_diverged():
    # Voters 1-3 keep the quorum; the partition lives on broker-only nodes 4 (preferred) and 5.
    with WeirCluster(3, brokers=2, overrides=FAST, name="unclean") as c:
        c.start()
        topic = unique_topic("unclean")
        client = admin(c.bootstrap())
        client.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[4, 5]])])[topic].result(30)
        wait_until(lambda: partitions(c.bootstrap(), topic)[0][2] == [4, 5], timeout=30, what="a full ISR")
        both = [f"both-{i}".encode() for i in range(10)]
        assert produce(c.bootstrap(), topic, both, "all") == list(range(10))

        c.node(5).kill9()
        wait_until(lambda: partitions(c.bootstrap(), topic)[0][2] == [4], timeout=30, what="the ISR shrinking to 4")
        only_on_4 = [f"only-on-4-{i}".encode() for i in range(5)]
        assert produce(c.bootstrap(), topic, only_on_4, "1") == list(range(10, 15))
        c.node(4).kill9()
        c.node(5).start()
        wait_until(lambda: 5 in c.broker_ids(1) and 4 not in c.broker_ids(1), timeout=30,
                   what="broker 5 registered and unfenced, broker 4 fenced")
        leader, _, isr = partitions(c.bootstrap(), topic)[0]
        assert (leader, isr) == (-1, [4]), "clean election only: broker 5 was not in sync"
        with wire.Conn(HOST, c.node(1).port) as conn:
            described = wire.metadata_partition(conn, topic, 0)
        assert described["error_code"] == KafkaError.LEADER_NOT_AVAILABLE, described
        assert described["offline_replicas"] == [4], described

        out = leader_election(c.bootstrap(), "--election-type", "UNCLEAN", "--topic", topic, "--partition", "0")
        print(f"\n{out}")
        assert f"Successfully completed leader election (UNCLEAN) for partitions {topic}-0" in out, out
        assert partitions(c.bootstrap(), topic)[0][:3:2] == (5, [5])
        after = [f"after-unclean-{i}".encode() for i in range(3)]
        assert produce(c.bootstrap(), topic, after, "all") == [10, 11, 12]

        c.node(4).start()
        wait_until(lambda: partitions(c.bootstrap(), topic)[0][2] == [4, 5], timeout=60,
                   what="broker 4 truncated, caught up and back in the ISR")
        assert "follower log diverged" in c.node(4).tail(400), c.node(4).tail(80)
        # Broker 4 leads again and serves exactly what broker 5 had: its own acks=1 records are gone.
        out = leader_election(c.bootstrap(), "--election-type", "PREFERRED", "--topic", topic, "--partition", "0")
        assert "Successfully completed" in out, out
        assert partitions(c.bootstrap(), topic)[0][0] == 4
        got = consume_assigned(c.bootstrap(), topic, [0], 13, timeout=30)
        assert [m.value() for m in got] == both + after
        assert [m.offset() for m in got] == list(range(13))
