"""Known traps of Kafka-compatible group coordinators, under load: consumers
joining and leaving while a rebalance is in progress must not get spurious
errors or lose records, and Kafka's own verifiable consumer must read a
steady producer's stream with its commits."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError

from lib.clients import JAVA_ENV, client_conf, create_topic, java_available, java_tool, produce, run


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ten_consumers_churning_for_a_minute_still_read_every_record(weir, topic):
    """At-least-once: every record produced is seen by some member, even
    though members start and stop at random the whole time."""
    create_topic(weir.bootstrap, topic, partitions=6)
    group = f"churn-{uuid.uuid4().hex[:8]}"
    total = 6000
    seen: set[bytes] = set()
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    rng = random.Random(7)

    def member(lifetime: float) -> None:
        c = Consumer(client_conf(weir.bootstrap, **{
            "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": True,
            "auto.commit.interval.ms": 200, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "cooperative-sticky"}))
        try:
            c.subscribe([topic])
            end = time.monotonic() + lifetime
            while time.monotonic() < end and not stop.is_set():
                m = c.poll(0.1)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() not in (KafkaError._PARTITION_EOF,):
                        with lock:
                            errors.append(str(m.error()))
                    continue
                with lock:
                    seen.add(m.value())
        finally:
            c.close()

    def producer() -> None:
        for start in range(0, total, 500):
            produce(weir.bootstrap, topic, [{"key": b"k%d" % i, "value": b"v%d" % i} for i in range(start, start + 500)])
            time.sleep(0.5)

    threads = [threading.Thread(target=producer)]
    threads[0].start()
    churn_until = time.monotonic() + 60
    while time.monotonic() < churn_until:
        t = threading.Thread(target=member, args=(rng.uniform(2, 12),))
        t.start()
        threads.append(t)
        time.sleep(rng.uniform(0.3, 1.5))
    # A last, steady member drains what is left.
    final = threading.Thread(target=member, args=(40,))
    final.start()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        with lock:
            if len(seen) >= total:
                break
        time.sleep(0.5)
    stop.set()
    for t in threads + [final]:
        t.join(30)
    missing = total - len(seen)
    assert missing == 0, f"{missing} of {total} records never consumed"
    unexpected = [e for e in errors if "UNKNOWN_MEMBER_ID" in e or "ILLEGAL_GENERATION" in e]
    assert not unexpected, f"spurious group errors: {unexpected[:5]}"


@pytest.mark.skipif(not java_available(), reason="java is not installed")
@pytest.mark.timeout(240)
def test_java_verifiable_consumer_reads_a_steady_producer(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=3)
    n = 3000
    producer = run([str(java_tool("kafka-verifiable-producer")), "--bootstrap-server", weir.bootstrap,
                    "--topic", topic, "--max-messages", str(n), "--throughput", "1500", "--acks", "-1"],
                   timeout=120, env=JAVA_ENV)
    acked = sum(1 for line in producer.stdout.splitlines()
                if line.startswith("{") and json.loads(line).get("name") == "producer_send_success")
    assert acked == n, f"producer acked {acked} of {n}"
    consumer = run([str(java_tool("kafka-verifiable-consumer")), "--bootstrap-server", weir.bootstrap,
                    "--topic", topic, "--group-id", f"vc-{uuid.uuid4().hex[:8]}", "--max-messages", str(n),
                    "--reset-policy", "earliest"],
                   timeout=120, env=JAVA_ENV)
    events = [json.loads(line) for line in consumer.stdout.splitlines() if line.startswith("{")]
    consumed = sum(e.get("count", 0) for e in events if e.get("name") == "records_consumed")
    assert consumed >= n, f"consumed {consumed} of {n}"
    assert any(e.get("name") == "partitions_assigned" for e in events)
    committed = [e for e in events if e.get("name") == "offsets_committed"]
    assert committed and all(e.get("success") for e in committed), committed[-3:]
