"""Startup never deletes data it failed to open. A broker of its own per test.

- A garbled `leader-epoch-checkpoint` does not stop the log from opening: it is
  rebuilt from the batches and every acknowledged record is read back.
- A partition whose log cannot be opened stays on disk and is offline: Metadata
  answers LEADER_NOT_AVAILABLE with no leader, produces fail, and once the damage
  is undone the next start serves every record again.
"""

from __future__ import annotations

import shutil

import pytest
from confluent_kafka import KafkaError, Producer

from lib import wire
from lib.clients import admin, client_conf, consume_assigned, create_topic, produce, wait_for_partitions
from lib.weir import HOST

N = 500
KAFKA_STORAGE_ERROR = 56
FIRST_SEGMENT = "00000000000000000000"
OFFLINE_LOG_LINE = "could not open the partition log"


def _produce_all(bootstrap: str, topic: str) -> list:
    records = [{"key": f"k{i}".encode(), "value": f"seq-{i}".encode(), "partition": 0} for i in range(N)]
    delivered = produce(bootstrap, topic, records, conf={"acks": "all"})
    assert [d.offset for d in delivered] == list(range(N))
    return delivered


def _check_all_read_back(bootstrap: str, topic: str) -> None:
    got = consume_assigned(bootstrap, topic, [0], N, timeout=60)
    assert [(m.offset(), m.value()) for m in got] == [(i, f"seq-{i}".encode()) for i in range(N)]


def _stop(w, how: str) -> None:
    if how == "kill9":
        w.kill9()
    else:
        assert w.stop() == 0, w.tail()


def _start_section(w) -> str:
    """The broker's log since its latest start."""
    text = w.log_path.read_text(errors="replace")
    return text.rsplit("===== start #", 1)[-1]


@pytest.mark.parametrize("how", ["stop", "kill9"])
def test_garbled_epoch_checkpoint_is_rebuilt(weir_factory, topic, how):
    w = weir_factory(name=f"weir-epochs-{how}")
    create_topic(w.bootstrap, topic, partitions=1)
    _produce_all(w.bootstrap, topic)
    _stop(w, how)

    checkpoint = w.data_dir / f"{topic}-0" / "leader-epoch-checkpoint"
    assert checkpoint.exists()
    checkpoint.write_bytes(b"\xde\xad\xbe\xef\x00\xff\x13\x37")

    w.start()
    wait_for_partitions(w.bootstrap, topic, 1)
    _check_all_read_back(w.bootstrap, topic)
    # Rewritten in Kafka's format: version 0, the count, then `epoch startOffset` lines.
    lines = checkpoint.read_text().splitlines()
    assert lines[0] == "0" and int(lines[1]) == len(lines) - 2 >= 1, lines
    assert lines[2].split()[1] == "0", lines
    assert "leader-epoch-checkpoint" in _start_section(w)


def test_unopenable_partition_stays_on_disk_and_offline(weir_factory, topic):
    w = weir_factory(name="weir-offline")
    create_topic(w.bootstrap, topic, partitions=1)
    _produce_all(w.bootstrap, topic)
    assert w.stop() == 0, w.tail()

    part_dir = w.data_dir / f"{topic}-0"
    log_file = part_dir / f"{FIRST_SEGMENT}.log"
    log_bytes = log_file.read_bytes()
    assert len(log_bytes) > 0
    # An index that is a directory cannot be opened, whoever the broker runs as.
    index = part_dir / f"{FIRST_SEGMENT}.index"
    index.unlink()
    index.mkdir()

    w.start()
    # The directory and its records are still there.
    assert part_dir.is_dir()
    assert log_file.read_bytes() == log_bytes
    assert _start_section(w).count(OFFLINE_LOG_LINE) == 1, w.tail()

    # Metadata: the partition has no leader and LEADER_NOT_AVAILABLE.
    md = admin(w.bootstrap).list_topics(topic=topic, timeout=10)
    t = md.topics[topic]
    assert t.error is None, t.error
    p = t.partitions[0]
    assert p.leader == -1, p
    assert p.error is not None and p.error.code() == KafkaError.LEADER_NOT_AVAILABLE, p.error

    # DescribeTopicPartitions (Kafka 3.8+'s kafka-topics --describe) agrees: no leader, this replica offline.
    with wire.Conn(HOST, w.port) as c:
        [described], _ = wire.describe_topic_partitions_v0(c, [topic], 10)
    assert (described["leaders"], described["offline_replicas"]) == ({0: -1}, {0: [1]}), described

    # A produce fails: librdkafka finds no leader and times the record out.
    errors, delivered = [], []
    prod = Producer(client_conf(w.bootstrap, **{"acks": "all", "message.timeout.ms": 3000}))
    prod.produce(topic, value=b"must-not-be-acked", partition=0,
                 on_delivery=lambda err, msg: (errors if err else delivered).append(err or msg))
    assert prod.flush(15) == 0
    assert not delivered and len(errors) == 1, (errors, delivered)
    # A produce sent to this broker anyway is refused; ListOffsets gets KAFKA_STORAGE_ERROR.
    with wire.Conn(HOST, w.port) as c:
        result = wire.produce_v7(c, topic, 0, wire.record_batch([(None, b"must-not-be-acked")]))
        assert result.error_code == KAFKA_STORAGE_ERROR, result
        assert wire.list_offsets_v1(c, topic, 0, wire.LATEST) == (KAFKA_STORAGE_ERROR, -1)
    assert log_file.read_bytes() == log_bytes

    # Undo the damage: the next start opens the log with every record.
    assert w.stop() == 0, w.tail()
    assert log_file.read_bytes() == log_bytes
    shutil.rmtree(index)
    w.start()
    wait_for_partitions(w.bootstrap, topic, 1)
    _check_all_read_back(w.bootstrap, topic)
    assert OFFLINE_LOG_LINE not in _start_section(w)
    # And it takes new records after them.
    d = produce(w.bootstrap, topic, [{"value": b"after", "partition": 0}], conf={"acks": "all"})
    assert d[0].offset == N
