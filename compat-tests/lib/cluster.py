"""A cluster of `weir` processes on loopback ports for the cluster tests.

Nodes 1..size are the voters: combined brokers and controllers
(`process.roles=broker,controller`), each with its own client port, controller
port and data dir, or, with `dedicated_controllers`, controller-only nodes
(`process.roles=controller`) that serve no clients. Nodes size+1..size+brokers
are brokers only (`process.roles=broker`): they follow the quorum as observers,
reaching it through `controller.quorum.bootstrap.servers`. Faults are injected
by PID only: kill -9, SIGSTOP/SIGCONT, restart on the same data, restart on an
emptied data dir. With `network=True` each node runs in its own network
namespace (lib/network.py) and `cluster.network.isolate(i)` partitions node i
from the others while clients still reach it.

    with WeirCluster(3) as cluster:
        cluster.start()
        leader = cluster.active_controller()
        cluster.node(leader).kill9()
"""

from __future__ import annotations

import shutil
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from . import wire
from .clients import admin, wait_until
from .network import Network
from .weir import HOST, Weir, free_port


def create_topic(bootstrap: str, name: str, partitions: int, replication_factor: int = 1,
                 timeout: float = 30.0) -> None:
    """Creates topic `name` through the node at `bootstrap`; raises the KafkaException it is answered with."""
    client = admin(bootstrap)  # kept alive until the answer is in
    new = NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
    client.create_topics([new], operation_timeout=timeout, request_timeout=timeout)[name].result(timeout=timeout)


def create_topic_through_failover(bootstrap: str, name: str, partitions: int, timeout: float = 60.0) -> list:
    """Creates topic `name` through `bootstrap`, asking again until it is answered (a
    controller election is on); returns the attempts that failed. An attempt the client
    gave up on may still have been applied: its retry then finds the topic, which counts
    as created."""
    failed = []

    def attempt() -> bool:
        try:
            create_topic(bootstrap, name, partitions=partitions, timeout=15)
        except KafkaException as e:
            if failed and e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return True
            failed.append(e)
            raise
        return True

    wait_until(attempt, timeout=timeout, interval=0.1, what=f"CreateTopics {name} through {bootstrap}")
    return failed


def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> leader of `topic`, as the node at `bootstrap` answers Metadata."""
    md = admin(bootstrap).list_topics(topic=topic, timeout=10)
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


def java_string_hash(s: str) -> int:
    """Java's `String.hashCode` (over UTF-16 code units), which places a group in `__consumer_offsets`."""
    units = s.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def group_coordinator(bootstrap: str, group: str) -> int:
    """The broker leading `group`'s `__consumer_offsets` partition, as the node at `bootstrap` answers Metadata."""
    offsets = admin(bootstrap).list_topics(topic="__consumer_offsets", timeout=10).topics["__consumer_offsets"]
    return offsets.partitions[abs(java_string_hash(group)) % len(offsets.partitions)].leader


class WeirCluster:
    """`size` voters with ids 1..size and `brokers` broker-only nodes after them.
    The voters are combined brokers and controllers, or with `dedicated_controllers`
    controller-only nodes that serve no clients. `overrides` apply to every node.
    With `network`, every node has its own network namespace and address."""

    def __init__(self, size: int = 3, overrides: dict[str, object] | None = None, name: str = "cluster",
                 brokers: int = 0, dedicated_controllers: bool = False, network: bool = False):
        self.size = size
        ids = list(range(1, size + brokers + 1))
        self.network = Network(ids) if network else None
        hosts = {i: self.network.address(i) if self.network else HOST for i in ids}
        self.controller_ports = {i: free_port() for i in range(1, size + 1)}
        voters = ",".join(f"{i}@{hosts[i]}:{port}" for i, port in self.controller_ports.items())
        self.nodes: dict[int, Weir] = {}
        for i in range(1, size + 1):
            node = self._node(f"{name}-node{i}", i, hosts[i])
            node.overrides.update({
                "node.id": i,
                "process.roles": "broker,controller",
                "listeners": f"PLAINTEXT://{hosts[i]}:{node.port},CONTROLLER://{hosts[i]}:{self.controller_ports[i]}",
                "advertised.listeners": f"PLAINTEXT://{hosts[i]}:{node.port}",
                "controller.listener.names": "CONTROLLER",
                "controller.quorum.voters": voters,
                "group.initial.rebalance.delay.ms": 0,
            })
            if dedicated_controllers:
                node.overrides.update({
                    "process.roles": "controller",
                    "listeners": f"CONTROLLER://{hosts[i]}:{self.controller_ports[i]}",
                    "advertised.listeners": "",
                })
                node.serves_clients = False
            node.overrides.update(overrides or {})
            self.nodes[i] = node
        bootstrap = ",".join(f"{hosts[i]}:{port}" for i, port in self.controller_ports.items())
        for i in range(size + 1, size + brokers + 1):
            node = self._node(f"{name}-broker{i}", i, hosts[i])
            node.overrides.update({
                "node.id": i,
                "process.roles": "broker",
                "listeners": f"PLAINTEXT://{hosts[i]}:{node.port}",
                "advertised.listeners": f"PLAINTEXT://{hosts[i]}:{node.port}",
                "controller.listener.names": "CONTROLLER",
                "controller.quorum.bootstrap.servers": bootstrap,
                "group.initial.rebalance.delay.ms": 0,
            })
            node.overrides.update(overrides or {})
            self.nodes[i] = node

    def _node(self, name: str, node_id: int, host: str) -> Weir:
        node = Weir(name=name)
        node.host = host
        if self.network:
            node.exec_prefix = self.network.exec_prefix(node_id)
        return node

    @property
    def voter_ids(self) -> list[int]:
        return list(range(1, self.size + 1))

    def __enter__(self) -> "WeirCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # ------------------------------------------------------------ nodes

    def node(self, node_id: int) -> Weir:
        return self.nodes[node_id]

    def running(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.alive()]

    def bootstrap(self, exclude: tuple[int, ...] = ()) -> str:
        """Every running node's client address, but `exclude`."""
        return ",".join(n.bootstrap for i, n in self.nodes.items()
                        if n.alive() and n.serves_clients and i not in exclude)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "WeirCluster":
        """Starts every node that is not running, then waits until each serves
        requests (a node serves only once a majority of voters elected a leader)."""
        stopped = [n for n in self.nodes.values() if not n.alive()]
        for n in stopped:
            n.start(wait=False)
        for n in stopped:
            n.wait_ready()
        return self

    def restart_empty(self, node_id: int) -> None:
        """Stops a node, removes everything in its data dir, starts it again (not waiting)."""
        node = self.nodes[node_id]
        node.stop()
        shutil.rmtree(node.data_dir)
        node.data_dir.mkdir()
        node.start(wait=False)

    def cleanup(self) -> None:
        for n in self.nodes.values():
            n.resume()
            n.cleanup()
        if self.network:
            self.network.destroy()

    # ------------------------------------------------------------ metadata

    def active_controller(self, via: int | None = None, timeout: float = 30.0) -> int:
        """The leader of the metadata quorum as DescribeQuorum reports it through a
        running node (`via`: that node only); the leader answers it itself, so it
        is alive."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for i in ([via] if via else [i for i in self.running() if self.nodes[i].serves_clients]):
                try:
                    with wire.Conn(self.nodes[i].host, self.nodes[i].port, timeout=5.0) as conn:
                        error, leader, _ = wire.describe_quorum_v0(conn)
                    if error == 0 and leader in self.nodes:
                        return leader
                    last = (error, leader)
                except OSError as e:  # a node that is electing may not answer in time
                    last = e
            time.sleep(0.02)
        raise AssertionError(f"no active controller within {timeout}s (last answer: {last!r})")

    def broker_ids(self, node_id: int) -> list[int]:
        """The broker ids node `node_id` lists in Metadata."""
        md = AdminClient({"bootstrap.servers": self.nodes[node_id].bootstrap}).list_topics(timeout=10)
        return sorted(md.brokers)

    def topics(self, node_id: int) -> dict[str, int]:
        """Topic -> partition count, as node `node_id` answers Metadata (internal topics left out)."""
        md = AdminClient({"bootstrap.servers": self.nodes[node_id].bootstrap}).list_topics(timeout=10)
        return {name: len(t.partitions) for name, t in md.topics.items() if not name.startswith("__")}

    def __repr__(self) -> str:
        return f"WeirCluster({', '.join(repr(n) for n in self.nodes.values())})"
