"""10,000 partitions on one broker (issue 9, scope 4: file descriptors bounded).

A segment keeps one descriptor (its .log; the indexes are memory-mapped with
their handle closed, as in Kafka), so 10,000 partitions fit in a
RLIMIT_NOFILE of 20000 with room. The test creates them (100 topics x 100
partitions), checks every one has a leader in Metadata, produces to a sample
and to the last one created, checks the broker's descriptor count, then stops
the broker cleanly, starts it again and checks it all again (the records
produced before the restart are still there, and no partition was recovered
as after a crash).

Timings, descriptor count and RSS are printed (run with -s to see them).

A broker started with a low RLIMIT_NOFILE refuses CreateTopics and
CreatePartitions that would not fit with POLICY_VIOLATION, and creates
nothing of them (a Weir deviation: Kafka has no such check).
"""

from __future__ import annotations

import os
import resource
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewPartitions, NewTopic

from lib.clients import admin, client_conf, unique_topic, wait_until
from lib.weir import Weir

TOPICS = 100
PER_TOPIC = 100
TOTAL = TOPICS * PER_TOPIC
# Every broker-side wait here scales with the partition count (a debug build is slow).
BIG_TIMEOUT_S = 600.0


class ManyPartitionsWeir(Weir):
    """A broker whose start and stop may take minutes (10,000 logs to open and close)."""

    def wait_ready(self, timeout: float = BIG_TIMEOUT_S) -> None:
        super().wait_ready(timeout)


def big_admin(bootstrap: str):
    """An admin client whose requests may take minutes (socket.timeout.ms, at most 300 s, bounds each)."""
    from confluent_kafka.admin import AdminClient

    return AdminClient(client_conf(bootstrap, **{"socket.timeout.ms": 300000}))


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss(pid: int) -> str:
    """VmRSS, and how much of it is anonymous memory and file pages (mapped indexes, binary)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(rest.split()[0]) / 1024
    return (f"RSS {fields.get('VmRSS', -1):.0f} MiB (anon {fields.get('RssAnon', -1):.0f}, "
            f"file {fields.get('RssFile', -1):.0f})")


def soft_nofile(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return 1 << 62 if soft == "unlimited" else int(soft)
    raise AssertionError("no 'Max open files' in /proc/<pid>/limits")


def all_led(a, names: list[str]) -> bool:
    md = a.list_topics(timeout=60)
    for name in names:
        t = md.topics.get(name)
        if t is None or t.error is not None or len(t.partitions) != PER_TOPIC:
            return False
        if any(p.leader < 0 for p in t.partitions.values()):
            return False
    return True


def produce_one_each(bootstrap: str, targets: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """One record to each (topic, partition); returns the offsets, raising on any delivery error."""
    p = Producer(client_conf(bootstrap, **{"acks": "all", "linger.ms": 5, "message.timeout.ms": 120000}))
    offsets: dict[tuple[str, int], int] = {}
    errors: list[str] = []

    def cb(err, msg):
        if err is not None:
            errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
        else:
            offsets[(msg.topic(), msg.partition())] = msg.offset()

    for topic, partition in targets:
        p.produce(topic, value=f"{topic}-{partition}".encode(), partition=partition, on_delivery=cb)
        p.poll(0)
    left = p.flush(180)
    assert left == 0, f"{left} records not delivered"
    assert not errors, errors[:10]
    assert set(offsets) == set(targets)
    return offsets


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ten_thousand_partitions_fit_and_survive_a_restart():
    w = ManyPartitionsWeir(name="weir-many")
    try:
        w.start()
        limit = soft_nofile(w.pid)
        if limit < TOTAL + 2000:
            pytest.skip(f"RLIMIT_NOFILE {limit} is below what 10,000 partitions need")
        fds_before = fd_count(w.pid)
        base = unique_topic("many")
        names = [f"{base}-{i:03d}" for i in range(TOPICS)]
        a = big_admin(w.bootstrap)

        t0 = time.monotonic()
        for i in range(0, TOPICS, 10):
            chunk = names[i:i + 10]
            fs = a.create_topics([NewTopic(n, num_partitions=PER_TOPIC, replication_factor=1) for n in chunk],
                                 operation_timeout=BIG_TIMEOUT_S, request_timeout=BIG_TIMEOUT_S)
            for n, f in fs.items():
                f.result(timeout=BIG_TIMEOUT_S)
        wait_until(lambda: all_led(a, names), timeout=BIG_TIMEOUT_S, interval=2.0,
                   what=f"{TOTAL} partitions with leaders")
        create_s = time.monotonic() - t0

        sample = [(n, p) for k, n in enumerate(names) for p in range(PER_TOPIC) if (k * PER_TOPIC + p) % 97 == 0]
        sample.append((names[-1], PER_TOPIC - 1))
        first = produce_one_each(w.bootstrap, sample)
        assert all(o == 0 for o in first.values()), first
        fds = fd_count(w.pid)
        mem = rss(w.pid)
        print(f"\n[many-partitions] created {TOTAL} partitions in {create_s:.1f}s; "
              f"fds {fds_before} -> {fds} (soft limit {limit}); {mem}")
        # One descriptor per partition (its active segment's .log), plus the broker's own.
        assert fds < TOTAL + 1000, f"{fds} descriptors for {TOTAL} partitions"
        assert fds < limit * 0.75, f"{fds} descriptors, too close to the limit {limit}"

        t0 = time.monotonic()
        code = w.stop(timeout=BIG_TIMEOUT_S)
        stop_s = time.monotonic() - t0
        assert code == 0, f"exit code {code}\n{w.tail()}"

        t0 = time.monotonic()
        w.start()
        a = big_admin(w.bootstrap)
        wait_until(lambda: all_led(a, names), timeout=BIG_TIMEOUT_S, interval=2.0,
                   what=f"{TOTAL} partitions with leaders after the restart")
        start_s = time.monotonic() - t0
        second = produce_one_each(w.bootstrap, sample)
        assert all(o == 1 for o in second.values()), "records produced before the restart are missing"
        fds = fd_count(w.pid)
        mem = rss(w.pid)
        print(f"[many-partitions] clean stop {stop_s:.1f}s; start until all led {start_s:.1f}s; "
              f"fds {fds}; {mem}")
        assert fds < TOTAL + 1000, f"{fds} descriptors for {TOTAL} partitions after the restart"
        # The stop was clean: the restart recovered nothing.
        log = w.log_path.read_text(errors="replace")
        last_start = log.rsplit("===== start #", 1)[-1]
        assert "no clean-shutdown marker" not in last_start, w.tail()
        assert "Too many open files" not in log, w.tail()
    finally:
        w.cleanup()


def test_partitions_beyond_the_descriptor_limit_are_refused():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 2000
    if hard != resource.RLIM_INFINITY and hard < low:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} below {low}")
    w = Weir(name="weir-lowfd")
    # The broker inherits this process's limit.
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        w.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert soft_nofile(w.pid) == low
        a = admin(w.bootstrap)
        ok, too_big = unique_topic("fits"), unique_topic("too-big")
        fs = a.create_topics([NewTopic(ok, num_partitions=100, replication_factor=1),
                              NewTopic(too_big, num_partitions=1500, replication_factor=1)],
                             operation_timeout=60, request_timeout=60)
        fs[ok].result(timeout=60)
        with pytest.raises(KafkaException) as refused:
            fs[too_big].result(timeout=60)
        err = refused.value.args[0]
        assert err.name() == "POLICY_VIOLATION" and not err.retriable(), err
        assert "file descriptors" in err.str(), err

        fs = a.create_partitions([NewPartitions(ok, 1600)], operation_timeout=60, request_timeout=60)
        with pytest.raises(KafkaException) as refused:
            fs[ok].result(timeout=60)
        assert refused.value.args[0].name() == "POLICY_VIOLATION", refused.value.args[0]
        fs = a.create_partitions([NewPartitions(ok, 110)], operation_timeout=60, request_timeout=60)
        fs[ok].result(timeout=60)

        # Nothing half-created: the refused topic does not exist, the other has exactly its partitions.
        def settled():
            md = a.list_topics(timeout=10)
            t = md.topics.get(ok)
            return (too_big not in md.topics and t is not None and len(t.partitions) == 110
                    and all(p.leader >= 0 for p in t.partitions.values()))

        wait_until(settled, timeout=30, what="110 led partitions and no refused topic")
        assert fd_count(w.pid) < low - 500
        assert "Too many open files" not in w.log_path.read_text(errors="replace"), w.tail()
    finally:
        w.cleanup()
