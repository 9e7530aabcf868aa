"""A broker killed with kill -9 in the middle of a consumer group rebalance,
then restarted on the same data dir, under real confluent-kafka members and a
steady producer.

Two members share a 6-partition topic; a third one subscribes, and while the
rebalance it starts is still in progress (the broker's own description of the
group says so a moment before the kill) the broker gets SIGKILL and is
restarted. Then:

- the group converges: three members with 2 partitions each, seen both by the
  members (assignment()) and by the broker (DescribeGroups /
  ConsumerGroupDescribe), and the restarted broker loaded the group from
  __consumer_offsets;
- nothing is lost: every record the producer had acknowledged, before, during
  and after the crash, is read at least once (an uncommitted tail may be read
  again);
- the commits survived: the records read and committed before the rebalance
  are never read a second time;
- once the group is stable, records produced later are read exactly once.

Classic groups (JoinGroup/SyncGroup; eager `range` and incremental
`cooperative-sticky`) and KIP-848 consumer groups (`group.protocol=consumer`,
killed while the third member is still reconciling)."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType

from lib.clients import admin, client_conf, create_topic, produce, wait_until
from lib.members import FAST_SESSIONS, Member

pytestmark = pytest.mark.timeout(120)

log = logging.getLogger(__name__)

PARTITIONS = 6
INITIAL = 600  # records read and committed by the first two members before the rebalance
LATER = 600  # records produced once the group is stable again

# Clients reconnect quickly to the restarted broker (librdkafka's default backoff grows to 10 s).
FAST_RECONNECT = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}


class BatchProducer(threading.Thread):
    """Produces `s-<n>` values round-robin over the partitions, 30 at a time
    with lib.clients.produce (which waits out the broker's restart), until
    stopped; keeps every acknowledged record."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True, name="producer")
        self.bootstrap, self.topic = bootstrap, topic
        self.stop_event = threading.Event()
        self.acked: dict[tuple[int, int], bytes] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        n = 0
        try:
            while not self.stop_event.is_set():
                batch = [{"value": b"s-%d" % i, "partition": i % PARTITIONS} for i in range(n, n + 30)]
                for d in produce(self.bootstrap, self.topic, batch, conf={"acks": "all", **FAST_RECONNECT}):
                    self.acked[(d.partition, d.offset)] = d.value
                n += 30
                time.sleep(0.05)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def _describe(client, group: str):
    [future] = client.describe_consumer_groups([group], request_timeout=5).values()
    return future.result()


def _parts(member_assignment) -> list[int]:
    return sorted(tp.partition for tp in member_assignment.topic_partitions)


def _owned(description) -> list[list[int]]:
    return sorted(_parts(m.assignment) for m in description.members)


def _summary(description) -> str:
    parts = []
    for m in description.members:
        own = _parts(m.assignment)
        target = _parts(m.target_assignment) if m.target_assignment is not None else None
        parts.append(f"{m.member_id[-8:]}: owns {own}" + (f" target {target}" if target is not None else ""))
    return f"state {description.state.name}, members [{'; '.join(parts)}]"


def _read_counts(members: list[Member]) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for m in members:
        for (p, o, _v) in list(m.reads):
            counts[(p, o)] = counts.get((p, o), 0) + 1
    return counts


def _loaded_groups_after_restart(w, timeout: float = 15.0) -> int:
    """Groups the restarted broker loaded: the sum of `groups=N` over its 'loaded groups from
    __consumer_offsets' lines, one per partition it leads (a partition is loaded once the
    restarted broker leads it again, after the controller unfenced it)."""
    def loaded() -> int:
        text = w.log_path.read_text(errors="replace")
        last_start = text.rsplit(f"===== start #{w.starts}:", 1)[-1]
        return sum(int(n) for n in re.findall(r"loaded groups from __consumer_offsets.*?groups=(\d+)", last_start))

    try:
        wait_until(lambda: loaded() >= 1, timeout=timeout, interval=0.1, what="the restarted broker's group loads")
    except AssertionError:
        pass
    return loaded()


def _kill_mid_rebalance_and_converge(w, topic: str, member_conf: dict, expected_type, mid_rebalance) -> None:
    """The scenario of this file. `mid_rebalance(description)` says whether the
    broker's description of the group shows the third member's rebalance in
    progress, at the point to kill."""
    t_start = time.monotonic()
    create_topic(w.bootstrap, topic, partitions=PARTITIONS)
    initial = produce(w.bootstrap, topic, [{"value": b"init-%d" % i, "partition": i % PARTITIONS}
                                           for i in range(INITIAL)])
    group = f"restart-{uuid.uuid4().hex[:8]}"
    conf = client_conf(w.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                       "enable.auto.commit": True, "auto.commit.interval.ms": 200,
                                       **FAST_RECONNECT, **member_conf})
    members = [Member(f"member-{i}", conf, topic) for i in range(3)]
    producer = BatchProducer(w.bootstrap, topic)
    a = admin(w.bootstrap)
    try:
        # Two members, 3 partitions each, the initial records read and committed.
        members[0].start()
        members[1].start()
        initial_keys = {(d.partition, d.offset) for d in initial}
        wait_until(lambda: sorted(len(m.assignment) for m in members[:2]) == [3, 3]
                   and initial_keys <= set(_read_counts(members)), timeout=40,
                   what="two members with 3 partitions each having read the initial records")

        def committed_everything():
            from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            [f] = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)]).values()
            return sum(max(tp.offset, 0) for tp in f.result(timeout=10).topic_partitions) == INITIAL

        wait_until(committed_everything, timeout=15, what="the initial records committed")
        stable = _describe(a, group)
        assert stable.type == expected_type and stable.state == ConsumerGroupState.STABLE, _summary(stable)
        log.info("two-member group formed in %.1fs: %s", time.monotonic() - t_start, _summary(stable))

        producer.start()
        wait_until(lambda: len(producer.acked) >= 150 or producer.error, timeout=20, what="the producer streaming")

        # The third member: kill -9 while its rebalance is in progress.
        members[2].start()
        t_subscribe = time.monotonic()
        history: list[str] = []  # what the broker and the members said, each change once

        def at_kill_point():
            d = _describe(a, group)
            now = f"broker: {_summary(d)}; members: {[m.assignment for m in members]}"
            if not history or history[-1].split("] ", 1)[-1] != now:
                history.append(f"[+{(time.monotonic() - t_subscribe) * 1000:.0f} ms] {now}")
            return mid_rebalance(d) and d

        try:
            seen = wait_until(at_kill_point, timeout=10, interval=0.02, what="the third member's rebalance in progress")
        except AssertionError as e:
            raise AssertionError(f"{e}; what was seen:\n" + "\n".join(history[-20:])) from e
        t_seen = time.monotonic()
        w.kill9()
        t_kill = time.monotonic()
        third_at_kill = list(members[2].assignment)
        log.info("kill -9 %.0f ms after the third subscribe, %.0f ms after the broker described the group as: %s; "
                 "the third member's assignment then: %s", (t_kill - t_subscribe) * 1000,
                 (t_kill - t_seen) * 1000, _summary(seen), third_at_kill)
        assert len(third_at_kill) < 2, f"the third member already had its share before the kill: {third_at_kill}"
        time.sleep(0.3)  # the members notice the broker is gone
        w.restart()
        t_restart = time.monotonic()
        # A new admin client: librdkafka 2.16's admin client that was idle across the broker's restart
        # (it re-bootstraps) can leave later requests unsent until they time out; the members are unaffected.
        a = admin(w.bootstrap)
        assert _loaded_groups_after_restart(w) >= 1, "the restarted broker loaded no group"

        # Convergence: 2 partitions each, on the members' side and on the broker's.
        def converged():
            if sorted(p for m in members for p in m.assignment) != list(range(PARTITIONS)):
                return False
            if any(len(m.assignment) != 2 for m in members):
                return False
            d = _describe(a, group)
            if d.state != ConsumerGroupState.STABLE or _owned(d) != sorted(sorted(m.assignment) for m in members):
                return False
            if any(m.target_assignment is not None and _parts(m.target_assignment) != _parts(m.assignment)
                   for m in d.members):
                return False
            return d

        try:
            final = wait_until(converged, timeout=60, interval=0.2, what="three members with 2 partitions each")
        except AssertionError as e:
            try:
                now = _summary(_describe(a, group))
            except Exception as de:  # noqa: BLE001
                now = repr(de)
            raise AssertionError(f"{e}; members' assignments {[m.assignment for m in members]}; broker: {now}") from e
        log.info("converged %.1fs after the restart: %s", time.monotonic() - t_restart, _summary(final))
        assert final.type == expected_type
        # The restarted broker carried on with the group it loaded: the first two members are still
        # in it under their ids (a group rebuilt from nothing would have given them new ones).
        first_two = {m.member_id for m in stable.members}
        assert first_two <= {m.member_id for m in final.members}, \
            f"the first members' ids {sorted(first_two)} are gone: {_summary(final)}"

        # Nothing lost: every acknowledged record is read at least once.
        producer.stop_event.set()
        producer.join(90)
        assert not producer.is_alive(), "the producer did not stop"
        assert producer.error is None, f"producer: {producer.error!r}"
        acked = dict(producer.acked)
        wait_until(lambda: set(acked) <= set(_read_counts(members)), timeout=30,
                   what=f"all {len(acked)} acknowledged records read")
        wrong = [(p, o, v, a_v) for m in members for (p, o, v) in m.reads
                 if (a_v := acked.get((p, o))) is not None and a_v != v]
        assert not wrong, f"records read with other values than acknowledged: {wrong[:5]}"
        counts = _read_counts(members)
        again = sum(1 for k in acked if counts[k] > 1)
        log.info("%d records acknowledged by the steady producer, %d of them read more than once "
                 "(the uncommitted tail)", len(acked), again)

        # The commits survived: the initial records, committed before the rebalance, were read once.
        twice = sorted(k for k in initial_keys if counts[k] != 1)
        assert not twice, f"{len(twice)} committed initial records read again after the restart, e.g. {twice[:5]}"

        # Stable again: later records are read exactly once.
        assignments = [list(m.assignment) for m in members]
        before = _read_counts(members)
        later = produce(w.bootstrap, topic, [{"value": b"later-%d" % i, "partition": i % PARTITIONS}
                                             for i in range(LATER)])
        later_keys = {(d.partition, d.offset) for d in later}
        wait_until(lambda: later_keys <= set(_read_counts(members)), timeout=30, what=f"the {LATER} later records")
        time.sleep(1.0)  # room for a duplicate to show up
        after = _read_counts(members)
        delta = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
        not_once = sorted((k, delta.get(k, 0)) for k in later_keys if delta.get(k, 0) != 1)
        assert not not_once, f"later records read other than exactly once: {not_once[:10]}"
        stray = sorted(k for k in delta if k not in later_keys)
        assert not stray, f"older records read again after the group settled: {stray[:10]}"
        assert [list(m.assignment) for m in members] == assignments, "the settled group rebalanced again"
        settled = _describe(a, group)
        assert settled.state == ConsumerGroupState.STABLE and sorted(map(len, _owned(settled))) == [2, 2, 2], \
            _summary(settled)
        fatal = [str(e) for m in members for e in m.errors if e.fatal()]
        assert not fatal, f"fatal consumer errors: {fatal[:5]}"
        assert all(m.failure is None for m in members), [m.failure for m in members]
        log.info("test body took %.1fs", time.monotonic() - t_start)
    finally:
        producer.stop_event.set()
        for m in members:
            m.stop()
        if producer.is_alive():
            producer.join(70)


def _classic_rebalancing(d) -> bool:
    # PreparingRebalance: the broker waits for the members to rejoin (they learn of it by
    # their next heartbeat, within 3 s); CompletingRebalance: it waits for the leader's SyncGroup.
    return d.state in (ConsumerGroupState.PREPARING_REBALANCING, ConsumerGroupState.COMPLETING_REBALANCING)


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_classic_group_survives_kill9_mid_rebalance(weir_factory, topic, strategy):
    # A short initial delay: the two first members form the group quickly.
    w = weir_factory({"group.initial.rebalance.delay.ms": 500})
    _kill_mid_rebalance_and_converge(
        w, topic, {"partition.assignment.strategy": strategy, "session.timeout.ms": 10000,
                   "heartbeat.interval.ms": 3000},
        ConsumerGroupType.CLASSIC, _classic_rebalancing)


def _reconciling(d) -> bool:
    # The third member is in, and the members do not all own their target assignment yet
    # (the broker's state is Assigning or Reconciling, which librdkafka shows as UNKNOWN).
    return (len(d.members) == 3 and all(m.target_assignment is not None for m in d.members)
            and any(_parts(m.target_assignment) != _parts(m.assignment) for m in d.members))


def _reconciling_after_a_revocation(d) -> bool:
    # Further on: a first member already gave its partition up (it owns exactly its 2-partition
    # target), and the third member does not own all of its target yet.
    return _reconciling(d) and any(
        len(_parts(m.assignment)) == 2 and _parts(m.assignment) == _parts(m.target_assignment) for m in d.members)


@pytest.mark.parametrize("kill_at", ["target-computed", "after-a-revocation"])
def test_consumer_group_survives_kill9_while_a_member_reconciles(weir_factory, topic, kill_at):
    w = weir_factory(FAST_SESSIONS)
    _kill_mid_rebalance_and_converge(w, topic, {"group.protocol": "consumer"}, ConsumerGroupType.CONSUMER,
                                     _reconciling_after_a_revocation if kill_at == "after-a-revocation"
                                     else _reconciling)
