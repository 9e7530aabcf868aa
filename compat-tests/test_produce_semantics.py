"""What the leader does with a producer's batch beyond storing it: idempotent
sequence checks (duplicates answered with their original offset, gaps refused,
surviving a crash), keys on compacted topics, LogAppendTime stamping. Batches are
hand-built (lib/wire.py) where the test needs exact producer ids and sequences;
otherwise confluent-kafka produces."""

from __future__ import annotations

import random
import time

from confluent_kafka import KafkaError, Producer

from lib import wire
from lib.clients import client_conf, consume_assigned, create_topic, produce, watermarks
from lib.weir import HOST


def _batch(seq: int, n: int, pid: int, epoch: int = 0) -> bytes:
    return wire.record_batch([(f"k{seq + i}".encode(), f"v{seq + i}".encode()) for i in range(n)],
                             producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def _pid() -> int:
    return random.randrange(10_000, 1 << 40)


def test_duplicate_batch_gets_its_original_offset_and_is_stored_once(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=1)
    pid = _pid()
    with wire.Conn(HOST, weir.port) as c:
        first = wire.produce_v7(c, topic, 0, _batch(0, 3, pid))
        assert (first.error_code, first.base_offset) == (0, 0)
        second = wire.produce_v7(c, topic, 0, _batch(3, 2, pid))
        assert (second.error_code, second.base_offset) == (0, 3)
        again = wire.produce_v7(c, topic, 0, _batch(0, 3, pid))
        assert (again.error_code, again.base_offset) == (0, 0), "a retried batch must be answered with its offset"
        gap = wire.produce_v7(c, topic, 0, _batch(9, 1, pid))
        assert gap.error_code == wire.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert watermarks(weir.bootstrap, topic, 0) == (0, 5)


def test_new_epoch_must_start_at_sequence_zero_and_fences_the_old_one(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=1)
    pid = _pid()
    with wire.Conn(HOST, weir.port) as c:
        assert wire.produce_v7(c, topic, 0, _batch(0, 1, pid, epoch=3)).error_code == 0
        assert wire.produce_v7(c, topic, 0, _batch(7, 1, pid, epoch=4)).error_code == wire.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert wire.produce_v7(c, topic, 0, _batch(0, 1, pid, epoch=4)).error_code == 0
        assert wire.produce_v7(c, topic, 0, _batch(1, 1, pid, epoch=3)).error_code == wire.INVALID_PRODUCER_EPOCH
    assert watermarks(weir.bootstrap, topic, 0) == (0, 2)


def test_deduplication_survives_kill9(weir_factory, topic):
    w = weir_factory()
    create_topic(w.bootstrap, topic, partitions=1)
    pid = _pid()
    with wire.Conn(HOST, w.port) as c:
        for seq in range(0, 50, 5):
            assert wire.produce_v7(c, topic, 0, _batch(seq, 5, pid)).error_code == 0
    w.kill9()
    w.restart()
    with wire.Conn(HOST, w.port) as c:
        retried = wire.produce_v7(c, topic, 0, _batch(45, 5, pid))
        assert (retried.error_code, retried.base_offset) == (0, 45), "dedupe state lost in the crash"
        nxt = wire.produce_v7(c, topic, 0, _batch(50, 5, pid))
        assert (nxt.error_code, nxt.base_offset) == (0, 50)
    assert watermarks(w.bootstrap, topic, 0) == (0, 55)


def test_compacted_topic_refuses_records_without_a_key(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=1, config={"cleanup.policy": "compact"})
    with wire.Conn(HOST, weir.port) as c:
        keyless = wire.record_batch([(b"k", b"v"), (None, b"no key")])
        assert wire.produce_v7(c, topic, 0, keyless).error_code == wire.INVALID_RECORD
    errors = []
    p = Producer(client_conf(weir.bootstrap, **{"linger.ms": 0}))
    # Separate batches: one keyless record fails its whole batch, as in Kafka.
    p.produce(topic, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    p.produce(topic, key=b"k", value=b"keyed", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    codes = sorted((e.code() if e else 0) for e in errors)
    assert codes == sorted([0, KafkaError.INVALID_RECORD]), errors
    assert watermarks(weir.bootstrap, topic, 0) == (0, 1), "only the keyed record is stored"


def test_log_append_time_topic_stamps_the_broker_time(weir, topic):
    create_topic(weir.bootstrap, topic, partitions=1, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    delivered = produce(weir.bootstrap, topic, [{"key": b"k", "value": b"v", "timestamp": 1_000_000}])
    after = int(time.time() * 1000)
    assert before - 1000 <= delivered[0].timestamp <= after + 1000
    [msg] = consume_assigned(weir.bootstrap, topic, [0], expected=1)
    ts_type, ts = msg.timestamp()
    assert ts_type == 2, "TIMESTAMP_LOG_APPEND_TIME"
    assert before - 1000 <= ts <= after + 1000 and ts != 1_000_000
