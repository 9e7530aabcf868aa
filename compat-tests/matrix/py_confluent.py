"""Matrix scenario for confluent-kafka (librdkafka): AdminClient.create_topics, Producer
(keyed, headers, explicit timestamps; each codec; then enable.idempotence), Consumer in
assign mode (its group.id is never joined or committed to). Scenario `subscribe`: Consumer.subscribe
in a fresh group (auto.offset.reset=earliest, no auto commit), read all, commit(), committed()
must be the end offsets; then a second Consumer of the group must reach EOF on all 6 partitions
without a record. See common.py for the records and the checks."""

from __future__ import annotations

import time

import common as c

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CLIENT = "confluent-kafka"


def conf(bootstrap: str, **extra) -> dict:
    return {"bootstrap.servers": bootstrap, "broker.address.family": "v4", "socket.timeout.ms": 10000, **extra}


def create_topic(bootstrap: str, topic: str) -> None:
    a = AdminClient(conf(bootstrap))
    fs = a.create_topics([NewTopic(topic, num_partitions=c.PARTITIONS, replication_factor=1)],
                         operation_timeout=30, request_timeout=30)
    fs[topic].result(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        t = a.list_topics(topic=topic, timeout=5).topics.get(topic)
        if t and t.error is None and len(t.partitions) == c.PARTITIONS and all(p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"{topic}: {c.PARTITIONS} partitions with leaders not visible")


def produce(bootstrap: str, topic: str, n: int, codec: str, base_ts: int, idempotent: bool) -> None:
    p = Producer(conf(bootstrap, **{"compression.type": codec, "linger.ms": 20, "acks": "all",
                                    "enable.idempotence": idempotent}))
    errors: list[str] = []

    def cb(err, msg):
        if err is not None and len(errors) < 5:
            errors.append(str(err))

    for i in range(n):
        while True:
            try:
                p.produce(topic, key=c.key_of(i), value=c.value_of(i, codec), headers=c.headers_of(i, codec),
                          timestamp=base_ts + i, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(60)
    if left or errors:
        raise AssertionError(f"{left} undelivered; delivery errors: {errors}")


def consume(bootstrap: str, topic: str, n: int, timeout: float = 60) -> list[c.Got]:
    # confluent-kafka insists on a group.id; it is never joined (assign, no commits).
    cons = Consumer(conf(bootstrap, **{"group.id": f"matrix-unused-{topic}", "enable.auto.commit": False,
                                       "enable.auto.offset.store": False, "enable.partition.eof": True,
                                       "auto.offset.reset": "error"}))
    try:
        cons.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(c.PARTITIONS)])
        got: list[c.Got] = []
        eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (len(got) < n or len(eof) < c.PARTITIONS):
            for m in cons.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        eof.add(m.partition())
                        continue
                    raise KafkaException(m.error())
                eof.discard(m.partition())
                got.append(c.Got(m.partition(), m.offset(), m.key(), m.value(),
                                 [(k, v) for k, v in (m.headers() or [])], m.timestamp()[1]))
        return got
    finally:
        cons.close()


def group_consumer(bootstrap: str, group: str, topic: str, assigned: set[int]) -> Consumer:
    def on_assign(cons, parts):
        assigned.update(p.partition for p in parts)

    def on_revoke(cons, parts):
        assigned.difference_update(p.partition for p in parts)

    cons = Consumer(conf(bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                       "enable.auto.commit": False, "enable.partition.eof": True,
                                       "session.timeout.ms": 10000}))
    cons.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    return cons


def poll_to_eof(cons: Consumer, assigned: set[int], n: int, timeout: float) -> list[c.Got]:
    """Consumes until it holds all partitions, has n records (0: none expected) and EOF on each."""
    got: list[c.Got] = []
    eof: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (len(got) < n or len(assigned) < c.PARTITIONS
                                          or not eof >= set(range(c.PARTITIONS))):
        for m in cons.consume(num_messages=1000, timeout=0.5):
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF
                    eof.add(m.partition())
                    continue
                raise KafkaException(m.error())
            eof.discard(m.partition())
            got.append(c.Got(m.partition(), m.offset(), m.key(), m.value(),
                             [(k, v) for k, v in (m.headers() or [])], m.timestamp()[1]))
    if len(assigned) < c.PARTITIONS or not eof >= set(range(c.PARTITIONS)):
        raise AssertionError(f"after {timeout:.0f}s: assigned {sorted(assigned)}, EOF on {sorted(eof)}, "
                             f"{len(got)} records")
    return got


def subscribe_cell(bootstrap: str, codec: str, n: int) -> list[str]:
    topic = c.topic_name("confluent", c.SUBSCRIBE, codec)
    group = c.group_name(topic)
    base_ts = c.base_timestamp()
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, n, codec, base_ts, False)
    tps = [TopicPartition(topic, p) for p in range(c.PARTITIONS)]
    assigned: set[int] = set()
    cons = group_consumer(bootstrap, group, topic, assigned)
    try:
        got = poll_to_eof(cons, assigned, n, 60)
        problems = c.check(got, c.Expect(n, codec, base_ts))
        cons.commit(asynchronous=False)
        ends = {p: cons.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(c.PARTITIONS)}
        committed = {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in cons.committed(tps, timeout=10)}
        problems += c.check_committed(committed, ends)
    finally:
        cons.close()
    # A second instance of the group: starts from the committed offsets, so EOF without a record.
    assigned2: set[int] = set()
    cons2 = group_consumer(bootstrap, group, topic, assigned2)
    try:
        again = poll_to_eof(cons2, assigned2, 0, 30)
        if again:
            problems.append(f"second consumer of the group read {len(again)} records (first "
                            f"p{again[0].partition}@{again[0].offset})")
    finally:
        cons2.close()
    return problems


def main() -> int:
    return c.run_standard_cells(CLIENT, "confluent", create_topic, produce, consume, subscribe_cell)


if __name__ == "__main__":
    raise SystemExit(main())
