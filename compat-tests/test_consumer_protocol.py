"""KIP-848 consumer groups (`group.protocol=consumer`) with real clients:
confluent-kafka (librdkafka 2.16, ConsumerGroupHeartbeat v1) subscribers
with each server assignor and a regular-expression subscription, the Java
3.9 console consumer (v0) with kafka-consumer-groups, a member killed with
SIGKILL, a broker killed under live members (who carry on: the group is in
__consumer_offsets), refused assignors, and the online migration of a live
classic group to a consumer group and back."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupType, KafkaError, TopicPartition

from lib.clients import (JAVA_ENV, client_conf, create_topic, java_available, java_tool, poll_messages,
                         produce, run, wait_until)
from lib.members import (FAST_SESSIONS, Member, describe_group, die_with_the_test, member_partitions,
                         stop_process_groups)

pytestmark = pytest.mark.timeout(180)


def _consumer(bootstrap: str, group: str, **extra) -> Consumer:
    return Consumer(client_conf(bootstrap, **{"group.id": group, "group.protocol": "consumer",
                                              "auto.offset.reset": "earliest", **extra}))


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
        description = describe_group(weir.bootstrap, group)
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
        before = [m.value() for m in poll_messages(c, 40, timeout=30)]
        assert len(before) == 40
        c.commit(asynchronous=False)
        w.kill9()
        w.restart()
        produce(w.bootstrap, topic, [{"value": b"v%d" % i, "partition": i % 2} for i in range(40, 60)])
        # The member carries on (the restarted broker loaded it) at the committed offsets.
        after = [m.value() for m in poll_messages(c, 20, timeout=60)]
        assert sorted(after) == sorted(b"v%d" % i for i in range(40, 60)), "resumed at the commit, nothing repeated"
        committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=20)
        assert [tp.offset for tp in committed] == [20, 20]
    finally:
        c.close()


def _java_member(bootstrap: str, topic: str, group: str, out) -> subprocess.Popen:
    """A KIP-848 console consumer printing to `out`; its log (warnings and up) goes beside it, `<out>.log`."""
    env = {**os.environ, **JAVA_ENV}
    with open(f"{out.name}.log", "wb") as log:
        return subprocess.Popen([str(java_tool("kafka-console-consumer")), "--bootstrap-server", bootstrap,
                                 "--topic", topic, "--group", group, "--from-beginning",
                                 "--consumer-property", "group.protocol=consumer"],
                                stdout=out, stderr=log, env=env, start_new_session=True,
                                preexec_fn=die_with_the_test)


# Kafka 3.9's AsyncKafkaConsumer can collect a fetch for a partition its background
# thread has just revoked and die on it (FetchCollector -> SubscriptionState.partitionLead);
# a client race, not a broker answer. Seen once in CI while a member gave up half its partitions.
CLIENT_REVOCATION_RACE = "IllegalStateException: No current assignment for partition"


def _restart_members_lost_to_the_client_race(members, outs, bootstrap: str, topic: str, group: str) -> None:
    """Starts again a Java member that exited on CLIENT_REVOCATION_RACE; its old log is kept beside."""
    for i, member in enumerate(members):
        log = Path(f"{outs[i].name}.log")
        if member.poll() is not None and CLIENT_REVOCATION_RACE in log.read_text(errors="replace"):
            log.rename(log.with_suffix(".first.log"))
            print(f"member {i} died on the client's revocation race; starting it again")
            members[i] = _java_member(bootstrap, topic, group, outs[i])


def _java_logs(outs) -> str:
    """The last lines each Java member logged, for a failure message."""
    tails = [f"--- {Path(out.name).name}.log ---\n" + "\n".join(Path(f"{out.name}.log").read_text().splitlines()[-30:])
             for out in outs]
    return "\n".join(tails)


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
        return sorted(len(p) for p in member_partitions(w.bootstrap, group).values())

    def settled() -> bool:
        _restart_members_lost_to_the_client_race(members, outs, w.bootstrap, topic, group)
        return assigned_counts() == [3, 3]

    try:
        try:
            wait_until(settled, timeout=90, what="two Java members with 3 partitions each")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{groups_tool('--describe', '--group', group, '--members', '--verbose')}"
                                 f"\nmember exit codes: {[m.poll() for m in members]}\n{_java_logs(outs)}") from e
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
        stop_process_groups(members)
        for out in outs:
            out.close()


@pytest.mark.skipif(not java_available(), reason="java is not installed")
@pytest.mark.timeout(240)
def test_java_members_keep_their_ids_and_partitions_across_a_broker_kill9(weir_factory, topic, tmp_path):
    """The group is in __consumer_offsets: after kill -9 and a restart the
    broker still knows both members (their server-made ids, epochs and
    partitions), so they carry on without rejoining."""
    w = weir_factory(FAST_SESSIONS)
    create_topic(w.bootstrap, topic, partitions=6)
    group = f"java848-{uuid.uuid4().hex[:8]}"
    outs = [open(tmp_path / f"member{i}.txt", "w+b") for i in range(2)]
    members = [_java_member(w.bootstrap, topic, group, out) for out in outs]

    def lines() -> list[str]:
        for out in outs:
            out.flush()
        return [x for i in range(2) for x in (tmp_path / f"member{i}.txt").read_text().split()]

    try:
        try:
            wait_until(lambda: sorted(map(len, member_partitions(w.bootstrap, group).values())) == [3, 3],
                       timeout=90, what="two Java members with 3 partitions each")
        except AssertionError as e:
            raise AssertionError(f"{e}\nmember exit codes: {[m.poll() for m in members]}\n{_java_logs(outs)}") from e
        produce(w.bootstrap, topic, [{"value": b"first-%d" % i, "partition": i % 6} for i in range(60)])
        wait_until(lambda: len(lines()) >= 60, timeout=30, what="the first 60 records")
        before = member_partitions(w.bootstrap, group)
        w.kill9()
        w.restart()
        # Straight after loading, before any heartbeat: the same members.
        assert member_partitions(w.bootstrap, group) == before
        produce(w.bootstrap, topic, [{"value": b"second-%d" % i, "partition": i % 6} for i in range(60)])
        wait_until(lambda: sum(x.startswith("second-") for x in lines()) >= 60, timeout=60,
                   what="both members reading on after the restart")
        # Well past a 6 s session: still the same two members, never fenced nor rejoined.
        time.sleep(8)
        assert member_partitions(w.bootstrap, group) == before
        assert all(m.poll() is None for m in members)
        everything = lines()
        assert sorted(x for x in everything if x.startswith("second-")) == sorted(f"second-{i}" for i in range(60))
    finally:
        stop_process_groups(members)
        for out in outs:
            out.close()


# Classic members with sessions short enough for a test to wait out.
_CLASSIC = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def _group_member(w, group: str, topic: str, name: str, **conf) -> Member:
    """A member of `group` reading `topic` from the beginning, committing every 100 ms."""
    return Member(name, client_conf(w.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                                     "auto.commit.interval.ms": 100, **conf}), topic)


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_a_classic_group_upgrades_online_and_downgrades_when_the_new_member_leaves(weir_factory, topic, strategy):
    """KIP-848's online migration (group.consumer.migration.policy, Kafka 3.9's
    default bidirectional): a consumer-protocol member joins a live classic
    group, which becomes a consumer group; the classic members stay, are
    rebalanced by the server assignor through JoinGroup/SyncGroup, and get the
    group back as a classic group when that member leaves."""
    w = weir_factory({"group.initial.rebalance.delay.ms": "0"})
    create_topic(w.bootstrap, topic, partitions=6)
    group = f"migrate-{uuid.uuid4().hex[:8]}"
    classic_conf = {**_CLASSIC, "partition.assignment.strategy": strategy}
    classic = [_group_member(w, group, topic, f"classic-{i}", **classic_conf) for i in range(2)]
    modern = _group_member(w, group, topic, "modern", **{"group.protocol": "consumer"})
    members = [*classic, modern]

    def seen() -> list[bytes]:
        return [v for m in members for v in m.values()]

    def owned(ms) -> list[int]:
        return sorted(len(m.assignment) for m in ms)

    def produce_batch(tag: str) -> set[bytes]:
        produce(w.bootstrap, topic, [{"value": b"%s-%d" % (tag.encode(), i), "partition": i % 6} for i in range(60)])
        return {b"%s-%d" % (tag.encode(), i) for i in range(60)}

    try:
        for m in classic:
            m.start()
        wait_until(lambda: owned(classic) == [3, 3], timeout=60, what="two classic members with 3 partitions each")
        assert describe_group(w.bootstrap, group).type == ConsumerGroupType.CLASSIC
        wanted = produce_batch("classic")
        modern.start()
        wait_until(lambda: owned(members) == [2, 2, 2], timeout=60, what="three members with 2 partitions each")
        described = describe_group(w.bootstrap, group)
        assert (described.type, described.state) == (ConsumerGroupType.CONSUMER, ConsumerGroupState.STABLE)
        assert sorted(len(m.assignment.topic_partitions) for m in described.members) == [2, 2, 2]
        wanted |= produce_batch("mixed")
        wait_until(lambda: wanted <= set(seen()), timeout=30, what="every record so far")
        modern.stop()
        wait_until(lambda: owned(classic) == [3, 3], timeout=60, what="the classic members taking it all back")
        wait_until(lambda: describe_group(w.bootstrap, group).type == ConsumerGroupType.CLASSIC, timeout=20,
                   what="a classic group again")
        wanted |= (after := produce_batch("downgraded"))
        wait_until(lambda: wanted <= set(seen()), timeout=30, what="every record, none lost")
        assert sorted(x for x in seen() if x in after) == sorted(after), "read once after the downgrade"
        assert not [e for m in members for e in m.errors if e.code() != KafkaError._PARTITION_EOF]
        assert all(m.failure is None for m in members), [m.failure for m in members]
    finally:
        for m in members:
            m.stop()


def test_a_classic_static_member_replacing_the_last_consumer_protocol_member_takes_over_without_a_rebalance(
        weir_factory, topic):
    """Kafka's downgrade by replacement: the last consumer-protocol member is
    static, leaves for a moment (its partitions are kept for it) and comes
    back as a classic member with the same group.instance.id. The group
    becomes a classic group at once and stays stable: the newcomer gets the
    partitions it inherited from its first SyncGroup, and the other member
    (range, an eager assignor: every rebalance would take its partitions
    away and hand them back) is not disturbed."""
    w = weir_factory({"group.initial.rebalance.delay.ms": "0"})
    create_topic(w.bootstrap, topic, partitions=6)
    group = f"replace-{uuid.uuid4().hex[:8]}"
    range_conf = {**_CLASSIC, "partition.assignment.strategy": "range"}
    steady = _group_member(w, group, topic, "steady", **range_conf, **{"group.instance.id": "steady"})
    modern = _group_member(w, group, topic, "modern", **{"group.protocol": "consumer", "group.instance.id": "swapped"})
    successor = _group_member(w, group, topic, "successor", **range_conf, **{"group.instance.id": "swapped"})
    members = [steady, modern, successor]
    try:
        steady.start()
        wait_until(lambda: len(steady.assignment) == 6, timeout=60, what="the classic member owning 6 partitions")
        modern.start()
        wait_until(lambda: sorted(len(m.assignment) for m in (steady, modern)) == [3, 3], timeout=60,
                   what="an upgraded group sharing 3 and 3")
        wait_until(lambda: describe_group(w.bootstrap, group).state == ConsumerGroupState.STABLE, timeout=30,
                   what="a stable consumer group")
        kept, inherited, assigns = list(steady.assignment), list(modern.assignment), steady.assigns
        modern.stop()  # a static member's leave: its partitions wait for it
        assert describe_group(w.bootstrap, group).type == ConsumerGroupType.CONSUMER
        successor.start()
        wait_until(lambda: successor.assignment == inherited, timeout=30,
                   what="the successor owning the partitions it inherited")
        described = describe_group(w.bootstrap, group)
        assert (described.type, described.state) == (ConsumerGroupType.CLASSIC, ConsumerGroupState.STABLE)
        assert successor.assigns == 1, "the successor's first SyncGroup gave it its partitions"
        wanted = {b"after-%d" % i for i in range(60)}
        produce(w.bootstrap, topic, [{"value": b"after-%d" % i, "partition": i % 6} for i in range(60)])
        wait_until(lambda: wanted <= set(steady.values() + successor.values()), timeout=30, what="every new record")
        after = [v for v in steady.values() + successor.values() if v in wanted]
        assert sorted(after) == sorted(wanted), "each new record read once"
        assert (steady.assignment, steady.assigns) == (kept, assigns), "no rebalance reached the other member"
        assert all(m.failure is None for m in members), [m.failure for m in members]
    finally:
        for m in members:
            m.stop()


def test_a_disabled_migration_policy_keeps_a_live_classic_group_classic(weir_factory, topic):
    w = weir_factory({"group.consumer.migration.policy": "disabled", "group.initial.rebalance.delay.ms": "0"})
    create_topic(w.bootstrap, topic, partitions=2)
    group = f"nomigrate-{uuid.uuid4().hex[:8]}"
    conf = client_conf(w.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest"})
    classic = Member("classic", conf, topic)
    modern = Member("modern", {**conf, "group.protocol": "consumer"}, topic)
    try:
        classic.start()
        wait_until(lambda: len(classic.assignment) == 2, timeout=60, what="the classic member")
        modern.start()
        # librdkafka raises GROUP_ID_NOT_FOUND from a heartbeat as a fatal error.
        wait_until(lambda: any(e.code() == KafkaError.GROUP_ID_NOT_FOUND or "group id does not exist" in e.str()
                               for e in modern.errors), timeout=30,
                   what="GROUP_ID_NOT_FOUND for the consumer-protocol member")
        assert describe_group(w.bootstrap, group).type == ConsumerGroupType.CLASSIC
        assert len(classic.assignment) == 2 and modern.assignment == []
    finally:
        for m in (classic, modern):
            m.stop()


@pytest.mark.skipif(not java_available(), reason="java is not installed")
@pytest.mark.timeout(240)
def test_java_classic_member_stays_through_an_upgrade_a_broker_kill9_and_a_downgrade(weir_factory, topic, tmp_path):
    """The Java 3.9 consumer on the classic protocol in a group that a
    `group.protocol=consumer` Java member upgrades: it keeps heartbeating,
    rejoins and syncs against the consumer group (its member record, with
    its classic metadata, survives a kill -9 of the broker), and owns every
    partition again once the other member leaves and the group is classic."""
    w = weir_factory({**FAST_SESSIONS, "group.initial.rebalance.delay.ms": "0"})
    create_topic(w.bootstrap, topic, partitions=4)
    group = f"javamig-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **JAVA_ENV}
    outs = [open(tmp_path / f"member{i}.txt", "w+b") for i in range(2)]

    def java(out, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([str(java_tool("kafka-console-consumer")), "--bootstrap-server", w.bootstrap,
                                 "--topic", topic, "--group", group, "--from-beginning", *extra],
                                stdout=out, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
                                preexec_fn=die_with_the_test)

    def lines() -> list[str]:
        for out in outs:
            out.flush()
        return [x for i in range(2) for x in (tmp_path / f"member{i}.txt").read_text().split()]

    def produce_batch(tag: str) -> list[str]:
        produce(w.bootstrap, topic, [{"value": f"{tag}-{i}".encode(), "partition": i % 4} for i in range(40)])
        return [f"{tag}-{i}" for i in range(40)]

    classic = java(outs[0], "--consumer-property", "session.timeout.ms=6000")
    members = [classic]
    try:
        wait_until(lambda: sorted(map(len, member_partitions(w.bootstrap, group).values())) == [4], timeout=90,
                   what="the classic Java member owning 4 partitions")
        first = produce_batch("first")
        wait_until(lambda: set(first) <= set(lines()), timeout=30, what="the classic member reading")
        modern = java(outs[1], "--consumer-property", "group.protocol=consumer")
        members.append(modern)
        wait_until(lambda: sorted(map(len, member_partitions(w.bootstrap, group).values())) == [2, 2], timeout=90,
                   what="an upgraded group sharing 2 and 2")
        assert describe_group(w.bootstrap, group).type == ConsumerGroupType.CONSUMER
        before = member_partitions(w.bootstrap, group)
        w.kill9()
        w.restart()
        assert member_partitions(w.bootstrap, group) == before, "both members, the classic one too, were restored"
        second = produce_batch("second")
        wait_until(lambda: set(second) <= set(lines()), timeout=60, what="both members reading after the restart")
        time.sleep(8)  # past both session timeouts: nobody was fenced
        assert member_partitions(w.bootstrap, group) == before
        os.killpg(modern.pid, signal.SIGTERM)  # a clean leave
        modern.wait(30)
        wait_until(lambda: describe_group(w.bootstrap, group).type == ConsumerGroupType.CLASSIC, timeout=30,
                   what="a classic group again")
        wait_until(lambda: sorted(map(len, member_partitions(w.bootstrap, group).values())) == [4], timeout=60,
                   what="the classic member owning all 4 partitions again")
        third = produce_batch("third")
        wait_until(lambda: set(third) <= set(lines()), timeout=30, what="the classic member reading everything")
        assert classic.poll() is None
        assert sorted(x for x in lines() if x.startswith("third-")) == sorted(third), "read once"
    finally:
        stop_process_groups(members)
        for out in outs:
            out.close()
