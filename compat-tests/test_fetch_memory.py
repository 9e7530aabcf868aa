"""Fetch responses are bounded by the broker's `fetch.max.bytes` and cost about
their own size in memory (issue 9): the record batches read from the log go to
the socket as they are, not copied into a response buffer."""

from __future__ import annotations

import threading

from lib import wire
from lib.clients import consume_assigned, create_topic, produce
from lib.weir import HOST

RECORD = 100 * 1024


def _fill(bootstrap: str, topic: str, count: int) -> None:
    create_topic(bootstrap, topic, partitions=1)
    produce(bootstrap, topic, [{"value": bytes([i % 251]) * RECORD} for i in range(count)],
            conf={"acks": "all", "linger.ms": 50, "batch.size": 1_000_000, "compression.type": "none"})


def test_broker_fetch_max_bytes_caps_what_a_client_asks_for(weir_factory):
    w = weir_factory({"fetch.max.bytes": 1_048_576})
    topic = "capped"
    _fill(w.bootstrap, topic, 40)
    with wire.Conn(HOST, w.port) as c:
        res = wire.fetch_v4(c, topic, 0, 0, max_bytes=64 << 20, partition_max_bytes=64 << 20)
        assert res.error_code == 0 and res.high_watermark == 40
        # At most the cap, or one whole batch when the first batch alone is larger.
        assert 0 < len(res.records) <= 1_048_576 + 1_100_000, len(res.records)
    # A consumer asking for 50 MiB at a time still reads everything, in more fetches.
    got = consume_assigned(w.bootstrap, topic, [0], expected=40, conf={"fetch.max.bytes": 50 << 20})
    assert [m.offset() for m in got] == list(range(40))


def test_concurrent_large_fetches_cost_about_their_size(weir_factory):
    w = weir_factory()
    topic = "big"
    count = 480  # 48 MiB in one partition
    _fill(w.bootstrap, topic, count)
    before = w.status_kib("VmRSS")
    sizes: list[int] = []
    errors: list[str] = []

    def fetch_all() -> None:
        try:
            with wire.Conn(HOST, w.port, timeout=60) as c:
                res = wire.fetch_v4(c, topic, 0, 0, max_bytes=60 << 20, partition_max_bytes=60 << 20)
                sizes.append(len(res.records))
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=fetch_all) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(sizes) == 4 and min(sizes) >= count * RECORD, sizes
    grown_kib = w.status_kib("VmHWM") - before
    total_kib = sum(sizes) // 1024
    # Each response is held once (its batches as read from the log); before the
    # chunked encoder it was held twice (the batches, then their copy in the response).
    assert grown_kib < total_kib * 1.4, f"peak RSS grew {grown_kib} KiB for {total_kib} KiB of responses"
