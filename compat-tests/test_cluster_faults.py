"""Faults against a three-node Weir cluster, checked with real clients and a
history checker.

- The active controller killed (kill -9) 20 times on a seeded schedule while a
  client keeps creating topics: every CreateTopics that was answered without
  error exists on all three nodes afterwards, and no two nodes ever reported
  different leaders for the same epoch (read from each node's log of the
  leaders it learned of).
- A voter paused (SIGSTOP) past the election timeout, then resumed, follows the
  leader again and serves what was created meanwhile.
- The active controller paused past an election and a broker session: the new
  leader fences the paused broker only; the other brokers' heartbeats, stuck
  on the paused leader, go to the new one once it is elected.
- A node restarted on an empty data dir rejoins with the cluster's id and metadata.
- A node that claims another node's id, a node.id outside the voters, and a
  voter set that disagrees with the stored quorum are refused with a message.
- A node whose metadata disk fills up stops with a message; the other two keep
  every acknowledged change, and the node catches up once it has space again.

Set WEIR_FAULT_SEED to replay a schedule; the seed in use is printed.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import threading
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from lib.clients import admin, client_conf, unique_topic, wait_until
from lib.cluster import WeirCluster
from lib.weir import HOST, Weir, WeirError, free_port

LEADER_LINE = re.compile(r"metadata quorum leader leader=(\d+) epoch=(\d+)")


def _seed() -> int:
    seed = int(os.environ.get("WEIR_FAULT_SEED", random.randrange(1 << 32)))
    print(f"\nWEIR_FAULT_SEED={seed}")
    return seed


def leaders_by_epoch(cluster: WeirCluster) -> dict[int, set[int]]:
    """Every (epoch -> leaders) any node logged, over all its starts."""
    seen: dict[int, set[int]] = {}
    for node in cluster.nodes.values():
        for leader, epoch in LEADER_LINE.findall(node.log_path.read_text(errors="replace")):
            seen.setdefault(int(epoch), set()).add(int(leader))
    return seen


def check_one_leader_per_epoch(cluster: WeirCluster) -> int:
    seen = leaders_by_epoch(cluster)
    split = {epoch: leaders for epoch, leaders in seen.items() if len(leaders) > 1}
    assert not split, f"epochs with more than one leader: {split}"
    return len(seen)


def create(bootstrap: str, name: str, partitions: int = 1) -> AdminClient:
    """Creates a topic and returns the admin client (keep it until its answers are read)."""
    a = AdminClient(client_conf(bootstrap, log_level=2))
    a.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10)[name].result(timeout=30)
    return a


class TopicCreator(threading.Thread):
    """Creates topics one after another through every running node until stopped,
    recording which were acknowledged (answered without error)."""

    def __init__(self, cluster: WeirCluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.acknowledged: list[str] = []
        self.failed = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            name = unique_topic("history")
            try:
                # log_level 2: the refused connections to a killed node are expected.
                a = AdminClient(client_conf(self.cluster.bootstrap() or self.cluster.node(1).bootstrap, log_level=2))
                a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                                operation_timeout=5, request_timeout=5)[name].result(timeout=10)
                self.acknowledged.append(name)
            except Exception:  # noqa: BLE001 - an unanswered or refused create is indeterminate
                self.failed += 1
                time.sleep(0.05)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)


@pytest.mark.slow
def test_active_controller_killed_20_times_while_topics_are_created():
    rng = random.Random(_seed())
    with WeirCluster(3) as cluster:
        cluster.start()
        creator = TopicCreator(cluster)
        creator.start()
        failovers = []
        try:
            for _ in range(20):
                time.sleep(rng.uniform(0.2, 2.0))
                victim = cluster.active_controller()
                survivors = [i for i in cluster.nodes if i != victim]
                cluster.node(victim).kill9()
                killed_at = time.monotonic()
                cluster.active_controller(via=rng.choice(survivors))
                failovers.append(time.monotonic() - killed_at)
                time.sleep(rng.uniform(0.0, 1.0))
                cluster.node(victim).start()
        finally:
            creator.stop()
        cluster.start()
        assert len(creator.acknowledged) >= 20, f"only {len(creator.acknowledged)} creates were answered"
        for i in cluster.nodes:
            wait_until(lambda i=i: set(creator.acknowledged) <= set(cluster.topics(i)), timeout=30,
                       what=f"every acknowledged topic on node {i}")
        epochs = check_one_leader_per_epoch(cluster)
        failovers.sort()
        print(f"{len(creator.acknowledged)} topics acknowledged, {creator.failed} creates failed or unanswered; "
              f"{epochs} epochs, one leader each; new leader seen after median "
              f"{failovers[len(failovers) // 2]:.2f} s, max {failovers[-1]:.2f} s")


def test_a_paused_voter_rejoins_as_follower():
    with WeirCluster(3) as cluster:
        cluster.start()
        before = unique_topic("before-pause")
        create(cluster.node(1).bootstrap, before)
        # The leader itself: the other two must elect another, and the resumed
        # one must step down.
        paused = cluster.active_controller()
        cluster.node(paused).pause()
        survivors = [i for i in cluster.nodes if i != paused]

        def elected():
            leader = cluster.active_controller(via=survivors[0])
            return leader if leader != paused else None

        new_leader = wait_until(elected, timeout=30, what="a new leader")
        during = unique_topic("during-pause")
        create(cluster.node(survivors[1]).bootstrap, during)
        cluster.node(paused).resume()
        wait_until(lambda: {before, during} <= set(cluster.topics(paused)), timeout=30,
                   what="the resumed voter to serve what was created during its pause")
        wait_until(lambda: cluster.active_controller(via=paused) == new_leader, timeout=30,
                   what="the resumed voter to follow the new leader")
        assert check_one_leader_per_epoch(cluster) >= 2


def test_a_paused_active_controller_fences_no_other_broker():
    """SIGSTOP of the active controller for longer than an election and a broker
    session: the brokers' heartbeats that were on their way to it are dropped
    once the new leader is known and go to the new leader, which fences the
    paused broker only (a heartbeat left waiting on the stopped process would
    let every session expire on the new leader, and every partition would
    change leader at once)."""
    overrides = {"broker.heartbeat.interval.ms": 300, "broker.session.timeout.ms": 3000}
    with WeirCluster(3, overrides=overrides, name="paused-controller") as cluster:
        cluster.start()
        paused = cluster.active_controller()
        survivors = [i for i in cluster.nodes if i != paused]
        cluster.node(paused).pause()
        try:
            stopped = time.monotonic()
            new_leader = wait_until(lambda: (lambda leader: leader if leader != paused else None)(
                cluster.active_controller(via=survivors[0])), timeout=30, what="a new leader")
            elected = time.monotonic() - stopped
            # Past the paused broker's session and then as long again on the new leader.
            wait_until(lambda: paused not in cluster.broker_ids(new_leader), timeout=30,
                       what=f"the paused broker {paused} fenced")
            time.sleep(4)
        finally:
            cluster.node(paused).resume()
        log = cluster.node(new_leader).log_path.read_text(errors="replace")
        fenced = sorted({int(m) for m in re.findall(r"broker fenced broker=(\d+)", log)})
        print(f"\nnew leader {new_leader} elected {elected:.1f} s after SIGSTOP of {paused}; it fenced {fenced}")
        story = [line for line in log.splitlines() if re.search(r"fenced|quorum leader|heartbeat|registered", line)]
        assert fenced == [paused], "\n".join(story[-40:])
        assert sorted(cluster.broker_ids(new_leader)) == sorted(survivors)


def test_a_node_restarted_on_an_empty_data_dir_rejoins():
    with WeirCluster(3) as cluster:
        cluster.start()
        topic = unique_topic("kept")
        a = create(cluster.node(1).bootstrap, topic, partitions=2)
        cluster_id = a.list_topics(timeout=10).cluster_id
        wiped = next(i for i in cluster.nodes if i != cluster.active_controller())
        cluster.restart_empty(wiped)
        cluster.node(wiped).wait_ready()
        wait_until(lambda: topic in cluster.topics(wiped), timeout=30, what="the wiped node to have the topic")
        assert admin(cluster.node(wiped).bootstrap).list_topics(timeout=10).cluster_id == cluster_id
        meta = (cluster.node(wiped).data_dir / "meta.properties").read_text()
        assert f"cluster.id={cluster_id}" in meta and f"node.id={wiped}" in meta
        assert cluster.broker_ids(wiped) == [1, 2, 3]
        check_one_leader_per_epoch(cluster)


def _refused(node: Weir, needle: str) -> None:
    """Starting `node` fails, and its log says why (the error comes before any backtrace)."""
    with pytest.raises(WeirError):
        node.start()
    assert not node.alive()
    log = node.log_path.read_text(errors="replace")
    last_start = log[log.rindex("===== start #"):]
    assert needle in last_start, last_start[-3000:]


def test_conflicting_identities_and_voter_sets_are_refused():
    with WeirCluster(3) as cluster:
        cluster.start()
        voters = cluster.node(1).overrides["controller.quorum.voters"]

        def stranger(node_id: int, controller_port: int, voter_list: str = voters) -> Weir:
            w = Weir(name=f"stranger-{node_id}")
            w.overrides.update({
                "node.id": node_id,
                "listeners": f"PLAINTEXT://{HOST}:{w.port},CONTROLLER://{HOST}:{controller_port}",
                "advertised.listeners": f"PLAINTEXT://{HOST}:{w.port}",
                "controller.quorum.voters": voter_list,
            })
            return w

        strangers = []
        try:
            # A second node 2 on its own controller port: its voter entry names another address.
            strangers.append(stranger(2, free_port()))
            _refused(strangers[-1], "is another node using node.id 2?")
            # ... and on node 2's own controller port, which node 2 holds.
            strangers.append(stranger(2, cluster.controller_ports[2]))
            _refused(strangers[-1], "controller listener")
            # A node outside the voter set.
            strangers.append(stranger(4, free_port()))
            _refused(strangers[-1], "is not one of controller.quorum.voters")
        finally:
            for w in strangers:
                w.cleanup()

        # Node 3 restarted with a voter set that disagrees with the stored quorum.
        node3 = cluster.node(3)
        node3.stop()
        node3.overrides["controller.quorum.voters"] = voters + f",4@{HOST}:{free_port()}"
        _refused(node3, "but the metadata quorum stored in")
        # The cluster goes on without it, and it rejoins with the right set.
        node3.overrides["controller.quorum.voters"] = voters
        node3.start()
        assert cluster.broker_ids(3) == [1, 2, 3]


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs to fill up (skipped where mounting is not allowed)."""
    mount = tmp_path / "metadata-disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk) -> None:
    """Takes every free byte of `disk`."""
    with open(disk / "filler", "wb", buffering=0) as f:
        for size in (1 << 16, 512):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


def test_a_full_metadata_disk_stops_that_node_and_loses_nothing_acknowledged(small_disk):
    with WeirCluster(3) as cluster:
        cluster.node(3).overrides["metadata.log.dir"] = str(small_disk / "metadata")
        cluster.start()
        acknowledged = [unique_topic("before-disk") for _ in range(5)]
        a = create(cluster.node(1).bootstrap, acknowledged[0])
        for name in acknowledged[1:]:
            create(cluster.node(1).bootstrap, name)
        _fill(small_disk)
        deadline = time.monotonic() + 60
        while cluster.node(3).alive() and time.monotonic() < deadline:
            name = unique_topic("disk")
            try:
                a.create_topics([NewTopic(name, 1, 1)], operation_timeout=5,
                                request_timeout=5)[name].result(timeout=10)
                acknowledged.append(name)
            except Exception:  # noqa: BLE001 - indeterminate while node 3 fails
                time.sleep(0.1)
        assert not cluster.node(3).alive(), "node 3 kept running on a full metadata disk"
        assert cluster.node(3).proc.returncode != 0
        log = cluster.node(3).log_path.read_text(errors="replace")
        assert "stopped because the metadata quorum failed" in log, log[-3000:]
        # The other two are a majority: they keep every acknowledged topic and go on.
        a = AdminClient(client_conf(cluster.bootstrap(), log_level=2))
        after = unique_topic("after-disk")
        wait_until(lambda: a.create_topics([NewTopic(after, 1, 1)], operation_timeout=5)[after].result(timeout=10)
                   is None, timeout=30, what="CreateTopics on the two survivors")
        for i in (1, 2):
            assert set(acknowledged + [after]) <= set(cluster.topics(i))
        # Space again: node 3 starts, catches up, and has lost nothing either.
        (small_disk / "filler").unlink()
        cluster.node(3).start()
        wait_until(lambda: set(acknowledged + [after]) <= set(cluster.topics(3)), timeout=30,
                   what="node 3 to catch up after its disk was freed")
        print(f"\n{len(acknowledged)} topics acknowledged before node 3 stopped on its full metadata disk")
