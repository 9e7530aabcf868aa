"""Consumer group members for the group tests: a subscribed confluent-kafka
Consumer polling in a thread of its own, and the broker settings that make
KIP-848 sessions short enough for a test to wait them out."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading

from confluent_kafka import Consumer

from lib.clients import admin

# Short KIP-848 sessions and heartbeats, so a silent member is fenced within seconds.
FAST_SESSIONS = {"group.consumer.session.timeout.ms": "6000", "group.consumer.heartbeat.interval.ms": "1000"}


class Member:
    """A subscribed Consumer polling in a thread: every record it reads as
    (partition, offset, value), its current assignment, and the errors poll
    returned (transport errors while a broker restarts are expected; the
    test decides), and how many times librdkafka handed it an assignment
    (once per rebalance it took part in, even when nothing changed)."""

    def __init__(self, name: str, conf: dict, topic: str):
        self.name, self.conf, self.topic = name, conf, topic
        self.reads: list[tuple[int, int, bytes]] = []
        self.assignment: list[int] = []
        self.errors: list = []
        self.assigns = 0
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Member":
        self._thread.start()
        return self

    def values(self) -> list[bytes]:
        return [v for (_p, _o, v) in list(self.reads)]

    def _run(self) -> None:
        try:
            c = Consumer(self.conf)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.failure = e
            return
        try:
            c.subscribe([self.topic], on_assign=self._on_assign)
            while not self._stop.is_set():
                m = c.poll(0.1)
                if m is not None:
                    if m.error():
                        self.errors.append(m.error())
                    else:
                        self.reads.append((m.partition(), m.offset(), m.value()))
                self.assignment = sorted(tp.partition for tp in c.assignment())
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.failure = e
        finally:
            c.close()

    def _on_assign(self, consumer: Consumer, partitions) -> None:
        self.assigns += 1

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)


def describe_group(bootstrap: str, group: str):
    """The group as the admin client describes it (ConsumerGroupDescribe, else DescribeGroups)."""
    client = admin(bootstrap)  # must outlive the future
    [future] = client.describe_consumer_groups([group], request_timeout=20).values()
    try:
        return future.result()
    finally:
        # A failed future's exception -> traceback -> this frame -> the future is a
        # cycle: without this the client lives on until a garbage collection.
        del future


def member_partitions(bootstrap: str, group: str) -> dict[str, list[int]]:
    """Member id -> the partitions the broker says it owns ({} until the group exists)."""
    try:
        members = describe_group(bootstrap, group).members
    except Exception:  # noqa: BLE001 - not there yet
        return {}
    return {m.member_id: sorted(tp.partition for tp in m.assignment.topic_partitions) for m in members}


def die_with_the_test() -> None:
    """A `preexec_fn` for client processes started from the test's main thread: the
    child is killed when the test process dies, even on an abort that skips every
    `finally` (Linux PR_SET_PDEATHSIG), so no client outlives its test to load the
    machine under the next ones."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def stop_process_groups(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each still running process's group (each was started with
    start_new_session=True, so a client's children go too), SIGKILL after 15 s."""
    for p in processes:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
