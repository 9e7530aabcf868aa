"""Matrix scenario for kafka-python: KafkaAdminClient.create_topics, KafkaProducer (keyed,
headers, timestamp_ms; each codec; then enable_idempotence), KafkaConsumer without a group
(group_id=None) in assign mode. See common.py for the records and the checks."""

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


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    a = c.parse_args()
    for scenario in a.scenarios:
        for codec in a.codecs:
            def cell():
                topic = c.topic_name("kafka-python", scenario, codec)
                base_ts = c.base_timestamp()
                create_topic(a.bootstrap, topic)
                produce(a.bootstrap, topic, a.records, codec, base_ts, scenario == "idempotent")
                return c.check(consume(a.bootstrap, topic, a.records), c.Expect(a.records, codec, base_ts))

            c.run_cell(CLIENT, scenario, codec, a.records, cell)
    return c.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
