"""Fault injection on a Weir cluster (issue 11), in the spirit of Jepsen's Kafka
analyses and Kafka's own replication system tests.

- Workload: idempotent acks=all producers (confluent-kafka) write unique,
  numbered values (`p<producer>-<seq>`, partition = seq mod partitions) to a
  replicated topic; a consumer group reads and commits; a watcher polls each
  partition's high watermark (ListOffsets) and the group's committed offsets.
- Nemesis: on a seeded random schedule, one fault at a time: kill -9 of a
  partition leader, of the active controller or of a random node (restarted
  after a while), SIGSTOP of a leader for longer than the broker session
  timeout (a zombie leader), then SIGCONT, and, on a cluster in network
  namespaces, a network partition cutting a leader or the active controller
  off from the other nodes (clients still reach it); and a follower's disk
  filled (ENOSPC) or made read-only (EROFS) through the storage fault hook,
  which stops that broker as Kafka stops on its only failed log dir, then
  freed and the broker restarted. After each fault the cluster must heal:
  every node up and every ISR full.
- Checker, over everything acknowledged, read and observed plus a final read
  of every partition: lost acknowledged writes, duplicates, reordering of a
  producer's values within a partition, an offset read with another value
  than the log holds, a high watermark or committed offset going backwards,
  and consumers stalled while records were there to read. Each must be 0.

The seed reproduces the schedule; the history (events, acks, reads,
observations) is written as JSON for a failed run.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from .clients import admin, client_conf

# Consumers that make no progress for this long while records wait are stuck
# (a group rebalance after a killed member or coordinator takes up to the
# session timeout plus a rebalance).
STALL_LIMIT_S = 45.0
# A gap between two acknowledgements longer than this is an unavailability window.
UNAVAILABLE_GAP_S = 1.0
# Disk faults: the switch file (in the node's temp dir) that arms each, and its errno.
DISK_FAULTS = {"disk-full": "ENOSPC", "read-only": "30"}  # 30: EROFS
# How long a broker may keep running after its disk failed under a write.
DISK_FAILURE_STOP_S = 30.0


def arm_disk_faults(cluster) -> None:
    """Arms, on every node of a cluster not yet started, writes under its data dir that
    fail while a switch file exists (see DISK_FAULTS)."""
    for node in cluster.nodes.values():
        node.env["WEIR_STORAGE_FAULTS"] = ";".join(
            f"op=write,errno={errno},persistent,under={node.data_dir},when={node.tmp / name}"
            for name, errno in DISK_FAULTS.items())


@dataclass
class History:
    """Everything the workload and the nemesis saw, with times since the start."""

    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    events: list = field(default_factory=list)        # (t, what)
    acked: dict = field(default_factory=dict)         # value -> (partition, offset)
    ack_times: list = field(default_factory=list)     # t of each ack
    failed: dict = field(default_factory=dict)        # value -> error (indeterminate)
    reads: list = field(default_factory=list)         # (t, partition, offset, value)
    watermarks: list = field(default_factory=list)    # (t, partition, high watermark)
    committed: list = field(default_factory=list)     # (t, partition, committed offset)

    def now(self) -> float:
        return time.monotonic() - self.started

    def event(self, what: str) -> None:
        with self.lock:
            self.events.append((round(self.now(), 3), what))
        print(f"[{self.now():7.1f}s] {what}", flush=True)

    def dump(self, path: Path) -> None:
        with self.lock:
            data = {
                "events": self.events,
                "acked": {v: list(po) for v, po in self.acked.items()},
                "failed": self.failed,
                "reads": self.reads,
                "watermarks": self.watermarks,
                "committed": self.committed,
            }
        path.write_text(json.dumps(data))


def client_debug(name: str) -> dict:
    """With WEIR_CHAOS_CLIENT_DEBUG (librdkafka debug contexts, e.g. cgrp,fetch), a
    client's log goes to WEIR_CHAOS_CLIENT_LOG_DIR (default /tmp)/<name>.log."""
    contexts = os.environ.get("WEIR_CHAOS_CLIENT_DEBUG")
    if not contexts:
        return {}
    logger = logging.getLogger(f"chaos.{name}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    path = Path(os.environ.get("WEIR_CHAOS_CLIENT_LOG_DIR", "/tmp")) / f"{name}.log"
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    return {"debug": contexts, "logger": logger}


class Workload:
    """Producers, a consumer group and a watcher, each on its own thread."""

    def __init__(self, bootstrap, topic: str, partitions: int, history: History,
                 producers: int = 2, consumers: int = 2, interval_s: float = 0.005):
        self.bootstrap = bootstrap  # a function: the running nodes' addresses
        self.topic, self.partitions, self.history = topic, partitions, history
        self.group = f"{topic}-group"
        self.stop_producing = threading.Event()
        self.stop_all = threading.Event()
        self.interval_s = interval_s
        self.producers = [threading.Thread(target=self._produce, args=(i,), daemon=True) for i in range(producers)]
        self.threads = [*self.producers]
        self.threads += [threading.Thread(target=self._consume, args=(i,), daemon=True) for i in range(consumers)]
        self.threads.append(threading.Thread(target=self._watch, daemon=True))
        self.consumed_through: dict[int, int] = {}  # partition -> next offset the group has read
        self.latest_highs: dict[int, int] = {}  # partition -> the highest high watermark observed
        self.last_progress = time.monotonic()
        self.stalls: list[float] = []

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self, drain_timeout: float = 120.0) -> None:
        """Stops producing, waits for the producers' last acknowledgements, lets the
        consumers read through every acknowledged record, then stops them."""
        self.stop_producing.set()
        for t in self.producers:
            t.join(160)  # each flushes for up to 150 s
        with self.history.lock:
            ends: dict[int, int] = {}
            for partition, offset in self.history.acked.values():
                if offset is not None and offset >= 0:  # librdkafka may not know an acknowledged offset
                    ends[partition] = max(ends.get(partition, 0), offset + 1)
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline and not self._drained(ends):
            time.sleep(0.5)
        if not self._drained(ends):
            self.history.event("consumers did not read everything acknowledged before the drain timeout")
            self.stalls.append(time.monotonic() - self.last_progress)
        self.stop_all.set()
        for t in self.threads:
            t.join(60)

    def _drained(self, ends: dict[int, int] | None = None) -> bool:
        """Whether the group has read up to `ends` (partition -> offset), by default
        every partition's latest observed high watermark."""
        with self.history.lock:
            highs = dict(self.latest_highs) if ends is None else ends
            complete = ends is not None or len(highs) == self.partitions
            return complete and all(self.consumed_through.get(p, 0) >= h for p, h in highs.items())

    def _produce(self, index: int) -> None:
        h = self.history

        def on_delivery(err, msg):
            value = msg.value().decode()
            with h.lock:
                if err is None:
                    h.acked[value] = (msg.partition(), msg.offset())
                    h.ack_times.append(h.now())
                else:
                    h.failed[value] = str(err)

        p = Producer(client_conf(self.bootstrap(), **{
            "acks": "all", "enable.idempotence": True, "linger.ms": 5,
            "message.timeout.ms": 120000, "request.timeout.ms": 10000,
        }))
        seq = 0
        while not self.stop_producing.is_set():
            try:
                p.produce(self.topic, value=f"p{index}-{seq}".encode(), partition=seq % self.partitions,
                          on_delivery=on_delivery)
                seq += 1
            except BufferError:
                pass
            p.poll(0)
            time.sleep(self.interval_s)
        p.flush(150)

    def _consume(self, index: int) -> None:
        h = self.history
        c = Consumer(client_conf(self.bootstrap(), **{
            "group.id": self.group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000, **client_debug(f"consumer{index}"),
        }))
        c.subscribe([self.topic])
        try:
            while not self.stop_all.is_set():
                msgs = [m for m in c.consume(200, 0.5) if m.error() is None]
                if not msgs:
                    continue
                with h.lock:
                    for m in msgs:
                        h.reads.append((round(h.now(), 3), m.partition(), m.offset(), m.value().decode()))
                        self.consumed_through[m.partition()] = max(self.consumed_through.get(m.partition(), 0),
                                                                   m.offset() + 1)
                    self.last_progress = time.monotonic()
                try:
                    c.commit(asynchronous=False)
                except KafkaException:
                    pass  # a rebalance or a coordinator move: the next commit carries the position
        finally:
            c.close()

    def _watch(self) -> None:
        h = self.history
        c = Consumer(client_conf(self.bootstrap(), **{"group.id": self.group, "enable.auto.commit": False}))
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        stalled_since = None
        try:
            while not self.stop_all.is_set():
                for tp in tps:
                    try:
                        _, high = c.get_watermark_offsets(tp, timeout=2, cached=False)
                    except KafkaException:
                        continue  # no leader or OFFSET_NOT_AVAILABLE during a failover: nothing observed
                    with h.lock:
                        h.watermarks.append((round(h.now(), 3), tp.partition, high))
                        self.latest_highs[tp.partition] = max(self.latest_highs.get(tp.partition, 0), high)
                try:
                    for tp in c.committed(tps, timeout=2):
                        if tp.offset >= 0:
                            with h.lock:
                                h.committed.append((round(h.now(), 3), tp.partition, tp.offset))
                except KafkaException:
                    pass
                waiting = not self._drained()
                idle = time.monotonic() - self.last_progress
                if waiting and idle > STALL_LIMIT_S and stalled_since is None:
                    stalled_since = self.last_progress
                    h.event(f"consumers stalled: nothing read for {idle:.0f} s while records wait")
                if stalled_since is not None and self.last_progress > stalled_since:
                    self.stalls.append(self.last_progress - stalled_since)
                    stalled_since = None
                time.sleep(0.5)
        finally:
            c.close()


class Nemesis:
    """One fault at a time on a seeded schedule; every fault is healed before the next."""

    FAULTS = ("kill-leader", "kill-controller", "kill-random", "pause-leader")
    NETWORK_FAULTS = ("isolate-leader", "isolate-controller")
    DISK_FAULTS = ("fail-follower-disk",)

    def __init__(self, cluster, topic: str, partitions: int, seed: int, history: History,
                 session_timeout_s: float):
        self.cluster, self.topic, self.partitions = cluster, topic, partitions
        self.random = random.Random(seed)
        self.history = history
        self.session_timeout_s = session_timeout_s
        self.faults = 0
        self.unhealed: list[str] = []
        self.kinds = self.FAULTS + (self.NETWORK_FAULTS if cluster.network else ())
        if all("WEIR_STORAGE_FAULTS" in n.env for n in cluster.nodes.values()):
            self.kinds += self.DISK_FAULTS

    def leader_of(self, partition: int) -> int:
        md = admin(self.cluster.bootstrap()).list_topics(topic=self.topic, timeout=10)
        return md.topics[self.topic].partitions[partition].leader

    def cycle(self) -> None:
        fault = self.random.choice(self.kinds)
        hold = self.random.uniform(2.0, 6.0)
        try:
            if fault in ("kill-leader", "isolate-leader"):
                victim = self.leader_of(self.random.randrange(self.partitions))
            elif fault in ("kill-controller", "isolate-controller"):
                victim = self.cluster.active_controller()
            elif fault == "kill-random":
                victim = self.random.choice(self.cluster.voter_ids)
            elif fault == "fail-follower-disk":
                leader = self.leader_of(self.random.randrange(self.partitions))
                victim = self.random.choice([i for i in self.cluster.voter_ids if i != leader])
            else:
                victim = self.leader_of(self.random.randrange(self.partitions))
                hold = self.session_timeout_s + self.random.uniform(1.0, 3.0)
            if fault.startswith("isolate"):
                # Shorter than the session timeout (nothing moves) or well past it.
                hold = self.random.choice((self.random.uniform(0.5, self.session_timeout_s * 0.8),
                                           self.session_timeout_s + self.random.uniform(1.0, 6.0)))
        except Exception as e:  # noqa: BLE001 - metadata unavailable: skip this cycle
            self.history.event(f"nemesis could not pick a victim for {fault}: {e}")
            return
        if victim not in self.cluster.nodes:
            self.history.event(f"nemesis: no leader to hit for {fault}")
            return
        node = self.cluster.node(victim)
        self.faults += 1
        if fault == "pause-leader":
            self.history.event(f"fault {self.faults}: SIGSTOP node {victim} (leader) for {hold:.1f} s")
            node.pause()
            time.sleep(hold)
            node.resume()
            self.history.event(f"heal: SIGCONT node {victim}")
        elif fault.startswith("isolate"):
            self.history.event(f"fault {self.faults}: network partition isolating node {victim} ({fault}) "
                               f"for {hold:.1f} s")
            self.cluster.network.isolate(victim)
            time.sleep(hold)
            self.cluster.network.heal(victim)
            self.history.event(f"heal: node {victim} reconnected")
        elif fault == "fail-follower-disk":
            self._fail_disk(victim, hold)
        else:
            self.history.event(f"fault {self.faults}: kill -9 node {victim} ({fault}), down {hold:.1f} s")
            node.kill9()
            time.sleep(hold)
            self._restart(victim)
        self.wait_healthy()

    def _fail_disk(self, victim: int, hold: float) -> None:
        """Fails every write under the node's data dir until it stops, then frees the disk,
        waits `hold` and starts it again."""
        node = self.cluster.node(victim)
        kind = self.random.choice(sorted(DISK_FAULTS))
        switch = node.tmp / kind
        self.history.event(f"fault {self.faults}: node {victim}'s disk {kind} (a follower)")
        switch.touch()
        deadline = time.monotonic() + DISK_FAILURE_STOP_S
        while node.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        switch.unlink()
        if node.alive():
            self.unhealed.append(f"node {victim} still running {DISK_FAILURE_STOP_S:.0f} s after its disk failed")
            self.history.event(self.unhealed[-1])
            return
        self.history.event(f"node {victim} stopped on its failed disk (exit {node.proc.returncode}); "
                           f"disk freed, restart in {hold:.1f} s")
        time.sleep(hold)
        self._restart(victim)

    def _restart(self, victim: int) -> None:
        """Starts a stopped node and waits until it serves requests again."""
        node = self.cluster.node(victim)
        node.start(wait=False)
        try:
            node.wait_ready(timeout=60)
            self.history.event(f"heal: node {victim} restarted")
        except Exception as e:  # noqa: BLE001 - recorded: the run fails
            self.unhealed.append(f"node {victim} did not start again: {e}")
            self.history.event(self.unhealed[-1])

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        seen = "nothing"
        while time.monotonic() < deadline:
            try:
                md = admin(self.cluster.bootstrap()).list_topics(topic=self.topic, timeout=5)
                parts = md.topics[self.topic].partitions.values()
                seen = (f"running {self.cluster.running()}, (leader, ISR) by partition "
                        f"{ {p.id: (p.leader, p.isrs) for p in parts} }")
                if len(self.cluster.running()) == len(self.cluster.nodes) and all(
                        len(p.isrs) == len(self.cluster.nodes) and p.leader >= 0 for p in parts):
                    self.history.event(f"healthy again after {time.monotonic() - started:.1f} s")
                    return
            except Exception as e:  # noqa: BLE001 - a node still starting
                seen = f"no metadata: {e}"
            time.sleep(0.5)
        self.unhealed.append(f"not healthy {timeout:.0f} s after fault {self.faults} (last seen: {seen})")
        self.history.event(self.unhealed[-1])


def final_log(bootstrap: str, topic: str, partitions: int, timeout: float = 120.0) -> dict[int, dict[int, str]]:
    """Every partition read from its start to its high watermark: partition -> offset -> value."""
    c = Consumer(client_conf(bootstrap, **{"group.id": f"{topic}-final", "enable.auto.commit": False,
                                           "enable.partition.eof": True}))
    try:
        highs = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30, cached=False)[1]
                 for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        log: dict[int, dict[int, str]] = defaultdict(dict)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(len(log[p]) < highs[p] for p in highs):
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    log[m.partition()][m.offset()] = m.value().decode()
        return {p: dict(log[p]) for p in range(partitions)}
    finally:
        c.close()


def non_monotonic(observations: list) -> int:
    """How many (t, partition, value) observations are below an earlier one of their partition."""
    best: dict[int, int] = {}
    count = 0
    for _, p, v in sorted(observations):
        if v < best.get(p, -1):
            count += 1
        best[p] = max(best.get(p, -1), v)
    return count


def check(history: History, log: dict[int, dict[int, str]], stalls: list[float]) -> dict[str, int]:
    """The anomaly counts (each must be 0) and the run's figures."""
    found = {v: (p, o) for p, entries in log.items() for o, v in entries.items()}
    occurrences: dict[str, int] = defaultdict(int)
    for entries in log.values():
        for v in entries.values():
            occurrences[v] += 1
    lost = sum(1 for v, (p, o) in history.acked.items() if log.get(p, {}).get(o) != v)
    duplicates = sum(n - 1 for n in occurrences.values() if n > 1)
    reordered = 0
    for p, entries in log.items():
        last_seq: dict[str, int] = {}
        for o in sorted(entries):
            producer, seq = entries[o].split("-", 1)
            if int(seq) <= last_seq.get(producer, -1):
                reordered += 1
            last_seq[producer] = int(seq)
    inconsistent = sum(1 for _, p, o, v in history.reads if log.get(p, {}).get(o) != v)
    read_values = {v for _, _, _, v in history.reads}
    unread = sum(1 for v in history.acked if v not in read_values)
    gaps = [b - a for a, b in zip(sorted(history.ack_times), sorted(history.ack_times)[1:]) if b - a > UNAVAILABLE_GAP_S]
    return {
        "lost acknowledged writes": lost,
        "duplicates": duplicates,
        "reordered within a partition": reordered,
        "offsets read with another value": inconsistent,
        "high watermark going backwards": non_monotonic(history.watermarks),
        "committed offset going backwards": non_monotonic(history.committed),
        f"consumer stalls over {STALL_LIMIT_S:.0f} s": sum(1 for s in stalls if s > STALL_LIMIT_S),
        "acknowledged but never read by the group": unread,
        # Figures, not anomalies:
        "_records acknowledged": len(history.acked),
        "_records in the log": len(found),
        "_sends failed (indeterminate)": len(history.failed),
        "_records read by the group": len(history.reads),
        "_unavailability windows": len(gaps),
        "_longest unavailability (ms)": int(max(gaps, default=0) * 1000),
    }


def table(counts: dict[str, int], faults: int, seed: int, seconds: float) -> str:
    rows = [f"seed {seed}, {seconds:.0f} s, {faults} faults"]
    rows += [f"  {name.lstrip('_'):40} {value}" for name, value in counts.items()]
    return "\n".join(rows)


ANOMALIES = ("lost acknowledged writes", "duplicates", "reordered within a partition",
             "offsets read with another value", "high watermark going backwards",
             "committed offset going backwards", "acknowledged but never read by the group")
