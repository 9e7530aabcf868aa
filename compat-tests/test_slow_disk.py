"""A slow disk under one partition stalls only the requests that wait for it (issue 11, scope 4).

The broker runs with `WEIR_STORAGE_FAULTS` arming a delay (a test hook of the
storage crate's file-system layer: every write under one partition's directory
sleeps, as on a saturated or failing disk) that is on only while a switch file
exists. Several confluent-kafka producers then write to that partition at
once, each append held up by the slow disk. Meanwhile, with real clients:

* a producer writing to another partition is acknowledged at once: appends run
  on the blocking pool, not on the async runtime's few worker threads, which
  stay free to serve other connections;
* a consumer reading the slow partition's older records (in sealed segments)
  gets them at once: such reads take no lock that an append holds.

Before appends and reads left the runtime, both waited for the slow appends.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from lib.clients import client_conf, create_topic, produce, unique_topic
from lib.weir import Weir

DELAY_MS = 3000
SLOW_PRODUCERS = 3
# Far below one delayed write: what a request that does not wait for the slow disk takes.
PROMPT_S = 1.5


def _produce_one(bootstrap: str, topic: str, value: bytes, results: list, index: int) -> None:
    p = Producer(client_conf(bootstrap, **{"acks": "1", "linger.ms": 0, "message.timeout.ms": 60000}))
    started = time.monotonic()
    delivered: list = []
    p.produce(topic, value=value, on_delivery=lambda err, msg: delivered.append(err))
    p.flush(60)
    results[index] = (time.monotonic() - started, delivered)


def test_a_slow_partition_does_not_stall_other_partitions_or_reads_of_sealed_segments(tmp_path):
    switch = tmp_path / "disk-slow"
    slow, fast = unique_topic("slow"), unique_topic("fast")
    w = Weir(name="weir-slow-disk")
    w.env["WEIR_STORAGE_FAULTS"] = f"op=write,delay_ms={DELAY_MS},under={w.data_dir}/{slow}-0,when={switch}"
    try:
        w.start()
        # Small segments: the records written first end up in sealed segments.
        create_topic(w.bootstrap, slow, config={"segment.bytes": "4096"})
        create_topic(w.bootstrap, fast)
        before = [{"value": f"old-{i}-{'x' * 100}".encode()} for i in range(200)]
        produce(w.bootstrap, slow, before, conf={"acks": "1"})
        # The segment holding them is full: this append rolls it, sealing it.
        produce(w.bootstrap, slow, [{"value": b"rolls"}], conf={"acks": "1"})
        produce(w.bootstrap, fast, [{"value": b"warm-up"}], conf={"acks": "1"})

        switch.touch()
        results: list = [None] * SLOW_PRODUCERS
        threads = [threading.Thread(target=_produce_one, args=(w.bootstrap, slow, f"slow-{i}".encode(), results, i))
                   for i in range(SLOW_PRODUCERS)]
        for t in threads:
            t.start()
        # Let the slow appends reach the disk (and, before the change, tie up the runtime).
        time.sleep(1.0)

        started = time.monotonic()
        delivered = produce(w.bootstrap, fast, [{"value": b"while-slow"}], conf={"acks": "1"}, timeout=30)
        fast_s = time.monotonic() - started
        assert len(delivered) == 1

        c = Consumer(client_conf(w.bootstrap, **{"group.id": unique_topic("g"), "enable.auto.commit": False}))
        try:
            started = time.monotonic()
            c.assign([TopicPartition(slow, 0, 0)])
            first = None
            while first is None and time.monotonic() - started < 30:
                m = c.poll(0.1)
                if m is not None and m.error() is None:
                    first = m
            read_s = time.monotonic() - started
        finally:
            c.close()
        assert first is not None and first.offset() == 0 and first.value() == before[0]["value"]

        for t in threads:
            t.join(60)
        slow_s = [r[0] for r in results]
        print(f"\nslow appends took {[f'{s:.2f}' for s in slow_s]} s; meanwhile a produce to another "
              f"partition took {fast_s:.3f} s and a read of the slow partition's sealed segments {read_s:.3f} s")
        # The delay was real: every slow append waited for at least one delayed write.
        assert all(s >= DELAY_MS / 1000 for s in slow_s), slow_s
        assert all(r[1] == [None] for r in results), results
        assert fast_s < PROMPT_S, f"a produce to a healthy partition waited {fast_s:.2f} s for the slow disk"
        assert read_s < PROMPT_S, f"a read of sealed segments waited {read_s:.2f} s for the slow appends"
    finally:
        switch.unlink(missing_ok=True)
        w.cleanup()
