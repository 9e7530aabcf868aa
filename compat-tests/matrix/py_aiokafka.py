"""Matrix scenario for aiokafka: AIOKafkaAdminClient.create_topics, AIOKafkaProducer (keyed,
headers, timestamp_ms; each codec; then enable_idempotence), AIOKafkaConsumer without a group
(group_id=None) in assign mode. Scenario `subscribe`: AIOKafkaConsumer(topic, group_id=<fresh
group>, auto_offset_reset="earliest", no auto commit) reads all, commit(), committed() must be the
end offsets; then a second AIOKafkaConsumer of the group must get all 6 partitions positioned at
the end offsets and read nothing. See common.py for the records and the checks."""

from __future__ import annotations

import asyncio
import logging
import time

import common as c

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

CLIENT = "aiokafka"


async def create_topic(bootstrap: str, topic: str) -> None:
    a = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await a.start()
    try:
        resp = await a.create_topics([NewTopic(topic, num_partitions=c.PARTITIONS, replication_factor=1)],
                                     timeout_ms=30000)
        errs = [e for e in getattr(resp, "topic_errors", []) if e[1] != 0]
        if errs:
            raise AssertionError(f"create_topics: {errs}")
    finally:
        await a.close()


async def produce(bootstrap: str, topic: str, n: int, codec: str, base_ts: int, idempotent: bool) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=64 * 1024,
                         compression_type=None if codec == "none" else codec, enable_idempotence=idempotent,
                         request_timeout_ms=30000)
    await p.start()
    try:
        futs = []
        for i in range(n):
            futs.append(await p.send(topic, key=c.key_of(i).encode(), value=c.value_of(i, codec).encode(),
                                     headers=c.headers_of(i, codec), timestamp_ms=base_ts + i))
        await p.flush()
        res = await asyncio.gather(*futs, return_exceptions=True)
        errors = [repr(r) for r in res if isinstance(r, BaseException)]
        if errors:
            raise AssertionError(f"{len(errors)} delivery errors: {errors[:3]}")
    finally:
        await p.stop()


async def consume(bootstrap: str, topic: str, n: int, timeout: float = 60) -> list[c.Got]:
    cons = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                            auto_offset_reset="earliest", request_timeout_ms=30000)
    await cons.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(c.PARTITIONS)]
        cons.assign(tps)
        await cons.seek_to_beginning(*tps)
        end = await cons.end_offsets(tps)
        got: list[c.Got] = []

        def take(batches):
            for _tp, msgs in batches.items():
                for m in msgs:
                    got.append(c.Got(m.partition, m.offset, m.key, m.value, list(m.headers), m.timestamp))

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = [await cons.position(tp) for tp in tps]
            if all(pos >= end[tp] for pos, tp in zip(positions, tps)):
                break
            take(await cons.getmany(timeout_ms=500, max_records=5000))
        take(await cons.getmany(timeout_ms=300))  # anything beyond the end offsets would be extra
        return got
    finally:
        await cons.stop()


def group_consumer(bootstrap: str, group: str, topic: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                            auto_offset_reset="earliest", request_timeout_ms=30000,
                            session_timeout_ms=10000, heartbeat_interval_ms=1000)


async def poll_group(cons: AIOKafkaConsumer, topic: str, timeout: float) -> tuple[list[c.Got], dict]:
    """Polls until all 6 partitions are assigned and every position has reached the end offset."""
    tps = [TopicPartition(topic, p) for p in range(c.PARTITIONS)]
    got: list[c.Got] = []

    def take(batches):
        for _tp, msgs in batches.items():
            for m in msgs:
                got.append(c.Got(m.partition, m.offset, m.key, m.value, list(m.headers), m.timestamp))

    end = None
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f}s: assignment "
                                 f"{sorted(tp.partition for tp in cons.assignment())}, {len(got)} records")
        take(await cons.getmany(timeout_ms=500, max_records=5000))
        if set(cons.assignment()) != set(tps):
            continue
        if end is None:
            end = await cons.end_offsets(tps)
        if all([await cons.position(tp) >= end[tp] for tp in tps]):
            break
    take(await cons.getmany(timeout_ms=300))  # anything beyond the end offsets would be extra
    return got, {tp.partition: o for tp, o in end.items()}


async def subscribe_cell(bootstrap: str, codec: str, n: int) -> list[str]:
    topic = c.topic_name("aiokafka", c.SUBSCRIBE, codec)
    group = c.group_name(topic)
    base_ts = c.base_timestamp()
    await create_topic(bootstrap, topic)
    await produce(bootstrap, topic, n, codec, base_ts, False)
    cons = group_consumer(bootstrap, group, topic)
    await cons.start()
    try:
        got, ends = await poll_group(cons, topic, 60)
        problems = c.check(got, c.Expect(n, codec, base_ts))
        await cons.commit()
        committed = {p: await cons.committed(TopicPartition(topic, p)) for p in range(c.PARTITIONS)}
        problems += c.check_committed(committed, ends)
    finally:
        await cons.stop()
    cons2 = group_consumer(bootstrap, group, topic)
    await cons2.start()
    try:
        again, _ = await poll_group(cons2, topic, 30)
        if again:
            problems.append(f"second consumer of the group read {len(again)} records (first "
                            f"p{again[0].partition}@{again[0].offset})")
    finally:
        await cons2.stop()
    return problems


async def amain() -> int:
    a = c.parse_args()
    for scenario, codec in c.cells(a.scenarios, a.codecs):
        t0 = time.monotonic()
        try:
            if scenario == c.SUBSCRIBE:
                problems = await subscribe_cell(a.bootstrap, codec, a.records)
            else:
                topic = c.topic_name("aiokafka", scenario, codec)
                base_ts = c.base_timestamp()
                await create_topic(a.bootstrap, topic)
                await produce(a.bootstrap, topic, a.records, codec, base_ts, scenario == "idempotent")
                problems = c.check(await consume(a.bootstrap, topic, a.records),
                                   c.Expect(a.records, codec, base_ts))
        except Exception as e:  # noqa: BLE001
            logging.exception("cell %s/%s", scenario, codec)
            problems = [f"{type(e).__name__}: {e}"]
        status = "fail" if problems else "pass"
        c.result(CLIENT, scenario, codec, status, "; ".join(problems), a.records, time.monotonic() - t0)
    return c.exit_code()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(asyncio.run(amain()))
