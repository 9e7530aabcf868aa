"""Shared helpers for the real-client tests: topic names, confluent-kafka admin /
produce / consume in assign mode, and running command-line tools with bounds."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .weir import REPO_ROOT

_counter = itertools.count()


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test uses (legal Kafka characters only)."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def wait_until(pred, timeout: float = 15.0, interval: float = 0.2, what: str = "condition"):
    """Polls `pred` until it returns a truthy value; returns it, or raises AssertionError."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - kept for the final message
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {last_exc!r}" if last_exc else ""))


# ------------------------------------------------------------------ tools

KAFKA_TOOLS = (REPO_ROOT / ".." / "shared" / "kafka-tools").resolve()
# The Java tools with a small heap and quiet logs.
JAVA_ENV = {"KAFKA_HEAP_OPTS": "-Xmx256m", "KAFKA_LOG_LEVEL": "warn"}


def java_tool(name: str) -> Path:
    return KAFKA_TOOLS / "bin" / f"{name}.sh"


def java_available() -> bool:
    return shutil.which("java") is not None


def run(cmd: list[str], input: bytes | str | None = None, timeout: float = 60.0,
        check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs a command with a hard timeout; on failure the message carries stdout/stderr."""
    text = not isinstance(input, bytes)
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, text=text,
                           env=full_env, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"timed out after {timeout}s: {cmd}\nstdout: {e.stdout!r}\nstderr: {e.stderr!r}") from e
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}: {cmd}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


# ------------------------------------------------------------------ confluent-kafka

def client_conf(bootstrap: str, **extra) -> dict:
    conf = {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "socket.timeout.ms": 10000,
    }
    conf.update(extra)
    return conf


def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient(client_conf(bootstrap))


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None,
                 timeout: float = 30.0) -> None:
    from confluent_kafka.admin import NewTopic

    a = admin(bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
                         operation_timeout=timeout, request_timeout=timeout)
    fs[name].result(timeout=timeout)
    wait_for_partitions(bootstrap, name, partitions, a=a)


def wait_for_partitions(bootstrap: str, name: str, partitions: int, a=None, timeout: float = 15.0) -> None:
    """Waits until Metadata shows `partitions` partitions of `name`, each with a leader."""
    a = a or admin(bootstrap)

    def ready():
        md = a.list_topics(topic=name, timeout=5)
        t = md.topics.get(name)
        return (t is not None and t.error is None and len(t.partitions) == partitions
                and all(p.leader >= 0 for p in t.partitions.values()))

    wait_until(ready, timeout=timeout, what=f"{partitions} partitions of {name} with leaders")


@dataclass
class Delivered:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


def produce(bootstrap: str, topic: str, records, conf: dict | None = None, timeout: float = 60.0) -> list[Delivered]:
    """Produces `records` (dicts with value, and optional key, partition, headers, timestamp);
    returns the delivery reports in send order and raises on any delivery error."""
    from confluent_kafka import Producer

    p = Producer(client_conf(bootstrap, **{"linger.ms": 5, **(conf or {})}))
    results: dict[int, Delivered] = {}
    errors: list[str] = []

    def cb_for(i):
        def cb(err, msg):
            if err is not None:
                errors.append(f"record {i}: {err}")
            else:
                results[i] = Delivered(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                       msg.timestamp()[1])
        return cb

    n = 0
    for i, r in enumerate(records):
        kwargs = {k: v for k, v in r.items() if k in ("key", "value", "partition", "headers", "timestamp")}
        while True:
            try:
                p.produce(topic, on_delivery=cb_for(i), **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        n += 1
    left = p.flush(timeout)
    assert left == 0, f"{left} records not delivered after {timeout}s"
    assert not errors, "delivery errors: " + "; ".join(errors[:10])
    assert len(results) == n
    return [results[i] for i in range(n)]


def poll_messages(consumer, count: int, timeout: float = 30.0, interval: float = 0.2) -> list:
    """Polls an already subscribed or assigned confluent-kafka Consumer until it
    has `count` records (error events are skipped) or `timeout` passes."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        m = consumer.poll(interval)
        if m is not None and not m.error():
            got.append(m)
    return got


def consume_assigned(bootstrap: str, topic: str, partitions, expected: int, timeout: float = 30.0,
                     conf: dict | None = None, start_offset=None):
    """Reads `expected` messages from the given partitions in assign mode (no group commits),
    starting at OFFSET_BEGINNING (or `start_offset`). Returns the Message objects."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(client_conf(bootstrap, **{
        "group.id": f"weir-compat-assign-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        **(conf or {}),
    }))
    try:
        start = OFFSET_BEGINNING if start_offset is None else start_offset
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for m in c.consume(num_messages=min(1000, expected - len(out)), timeout=0.5):
                if m.error():
                    raise AssertionError(f"consumer error: {m.error()}")
                out.append(m)
        assert len(out) == expected, f"consumed {len(out)} of {expected} records from {topic} in {timeout}s"
        # Nothing extra should follow.
        extra = c.consume(num_messages=10, timeout=0.5)
        assert not [m for m in extra if not m.error()], "more records than expected"
        return out
    finally:
        c.close()


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(client_conf(bootstrap, **{"group.id": f"weir-compat-wm-{uuid.uuid4().hex[:8]}",
                                           "enable.auto.commit": False}))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


class BackgroundProducer:
    """An idempotent acks=all confluent-kafka producer writing `value-<n>` to `topic`
    on its own thread until stop(): `acked` maps each acknowledged value to its
    (partition, offset), `errors` holds every delivery error."""

    def __init__(self, bootstrap: str, topic: str, interval_s: float = 0.002):
        import threading

        self.bootstrap, self.topic, self.interval_s = bootstrap, topic, interval_s
        self.acked: dict[bytes, tuple[int, int]] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)

    def __enter__(self) -> "BackgroundProducer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops writing and waits until everything sent is acknowledged or failed."""
        self._stop.set()
        self._thread.join(90)

    def _on_delivery(self, err, msg) -> None:
        if err is None:
            self.acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            self.errors.append(str(err))

    def _write(self) -> None:
        from confluent_kafka import Producer

        p = Producer(client_conf(self.bootstrap, **{"acks": "all", "enable.idempotence": True, "linger.ms": 2,
                                                    "message.timeout.ms": 60000}))
        i = 0
        while not self._stop.is_set():
            p.produce(self.topic, value=f"value-{i}".encode(), on_delivery=self._on_delivery)
            p.poll(0)
            i += 1
            time.sleep(self.interval_s)
        p.flush(60)


def assert_read_back(bootstrap: str, topic: str, acked: dict[bytes, tuple[int, int]]) -> None:
    """Every acknowledged value (value -> (partition, offset)) is read back once, at its offset."""
    by_partition: dict[int, dict[int, bytes]] = {}
    for value, (partition, offset) in acked.items():
        by_partition.setdefault(partition, {})[offset] = value
    for partition, expected in by_partition.items():
        got = consume_assigned(bootstrap, topic, [partition], max(expected) + 1, timeout=60)
        stored = {m.offset(): m.value() for m in got}
        lost = [o for o, v in expected.items() if stored.get(o) != v]
        assert not lost, f"partition {partition}: {len(lost)} acknowledged records lost, e.g. offsets {lost[:5]}"
        values = [m.value() for m in got]
        assert len(values) == len(set(values)), f"partition {partition}: duplicates"
