"""Matrix scenario for kafka-python: KafkaAdminClient.create_topics, KafkaProducer (keyed,
headers, timestamp_ms; each codec; then enable_idempotence), KafkaConsumer without a group
(group_id=None) in assign mode. Scenario `subscribe`: KafkaConsumer(topic, group_id=<fresh group>,
auto_offset_reset="earliest", no auto commit) reads all, commit(), committed() must be the end
offsets; then a second KafkaConsumer of the group must get all 6 partitions positioned at the end
offsets and read nothing. See common.py for the records and the checks."""

from __future__ import annotations

import logging
import time

import common as c

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

CLIENT = "kafka-python"


def create_topic(bootstrap: str, topic: str) -> None:
    a = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="matrix-kafka-python", request_timeout_ms=30000)
    try:
        a.create_topics([NewTopic(topic, num_partitions=c.PARTITIONS, replication_factor=1)], timeout_ms=30000)
    finally:
        a.close()


def produce(bootstrap: str, topic: str, n: int, codec: str, base_ts: int, idempotent: bool) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=64 * 1024,
                      compression_type=None if codec == "none" else codec, enable_idempotence=idempotent,
                      request_timeout_ms=30000)
    try:
        futs = [p.send(topic, key=c.key_of(i).encode(), value=c.value_of(i, codec).encode(),
                       headers=c.headers_of(i, codec), timestamp_ms=base_ts + i) for i in range(n)]
        p.flush(timeout=60)
        errors = [str(f.exception) for f in futs if f.failed()]
        undone = sum(1 for f in futs if not f.is_done)
        if errors or undone:
            raise AssertionError(f"{undone} undelivered; {len(errors)} errors: {errors[:3]}")
    finally:
        p.close(timeout=10)


def consume(bootstrap: str, topic: str, n: int, timeout: float = 60) -> list[c.Got]:
    # kafka-python 2.3 refuses frames over receive_message_max_bytes (1,000,000) although its
    # fetch_max_bytes defaults to 50 MiB: a 6-partition fetch of the uncompressed topic is ~1.3 MB
    # (Kafka would send the same), so the fetch is capped below the frame limit.
    cons = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", request_timeout_ms=30000, fetch_max_bytes=900_000)
    try:
        tps = [TopicPartition(topic, p) for p in range(c.PARTITIONS)]
        cons.assign(tps)
        cons.seek_to_beginning(*tps)
        end = cons.end_offsets(tps)
        got: list[c.Got] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(cons.position(tp) < end[tp] for tp in tps):
            for tp, msgs in cons.poll(timeout_ms=500, max_records=5000).items():
                for m in msgs:
                    got.append(c.Got(m.partition, m.offset, m.key, m.value, list(m.headers), m.timestamp))
        # Anything beyond the end offsets read before would be extra.
        for _tp, msgs in cons.poll(timeout_ms=300).items():
            for m in msgs:
                got.append(c.Got(m.partition, m.offset, m.key, m.value, list(m.headers), m.timestamp))
        return got
    finally:
        cons.close()


def group_consumer(bootstrap: str, group: str, topic: str) -> KafkaConsumer:
    return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                         auto_offset_reset="earliest", request_timeout_ms=30000, fetch_max_bytes=900_000,
                         session_timeout_ms=10000, heartbeat_interval_ms=1000)


def poll_group(cons: KafkaConsumer, topic: str, timeout: float) -> tuple[list[c.Got], dict]:
    """Polls until all 6 partitions are assigned and every position has reached the end offset."""
    tps = [TopicPartition(topic, p) for p in range(c.PARTITIONS)]
    got: list[c.Got] = []
    end = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _tp, msgs in cons.poll(timeout_ms=500, max_records=5000).items():
            for m in msgs:
                got.append(c.Got(m.partition, m.offset, m.key, m.value, list(m.headers), m.timestamp))
        if set(cons.assignment()) != set(tps):
            continue
        if end is None:
            end = cons.end_offsets(tps)
        if all(cons.position(tp) >= end[tp] for tp in tps):
            break
    else:
        raise AssertionError(f"after {timeout:.0f}s: assignment {sorted(tp.partition for tp in cons.assignment())}, "
                             f"{len(got)} records")
    for _tp, msgs in cons.poll(timeout_ms=300).items():  # anything beyond would be extra
        for m in msgs:
            got.append(c.Got(m.partition, m.offset, m.key, m.value, list(m.headers), m.timestamp))
    return got, {tp.partition: o for tp, o in end.items()}


def subscribe_cell(bootstrap: str, codec: str, n: int) -> list[str]:
    topic = c.topic_name("kafka-python", c.SUBSCRIBE, codec)
    group = c.group_name(topic)
    base_ts = c.base_timestamp()
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, n, codec, base_ts, False)
    cons = group_consumer(bootstrap, group, topic)
    try:
        got, ends = poll_group(cons, topic, 60)
        problems = c.check(got, c.Expect(n, codec, base_ts))
        cons.commit()
        committed = {p: cons.committed(TopicPartition(topic, p)) for p in range(c.PARTITIONS)}
        problems += c.check_committed(committed, ends)
    finally:
        cons.close()
    cons2 = group_consumer(bootstrap, group, topic)
    try:
        again, _ = poll_group(cons2, topic, 30)
        if again:
            problems.append(f"second consumer of the group read {len(again)} records (first "
                            f"p{again[0].partition}@{again[0].offset})")
    finally:
        cons2.close()
    return problems


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    return c.run_standard_cells(CLIENT, "kafka-python", create_topic, produce, consume, subscribe_cell)


if __name__ == "__main__":
    raise SystemExit(main())
