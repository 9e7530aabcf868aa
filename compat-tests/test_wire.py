"""Raw-socket tests: Kafka frames built by hand from the protocol guide (lib/wire.py),
no client library on the tested path."""

from __future__ import annotations

import random
import struct

import pytest

from lib import wire
from lib.clients import create_topic
from lib.weir import HOST


def _conn(weir) -> wire.Conn:
    return wire.Conn(HOST, weir.port)


def _advertised(weir) -> dict[int, tuple[int, int]]:
    with _conn(weir) as c:
        r = wire.api_versions(c, 0)
    assert r.error_code == 0
    return r.api_keys


def _expect_unsupported_or_closed(conn: wire.Conn, cid: int) -> str:
    """Either the connection is closed, or a response with our correlation id carries error 35."""
    try:
        body = wire.recv_frame(conn.sock)
    except wire.Closed:
        return "closed"
    (got,) = struct.unpack(">i", body[:4])
    assert got == cid, f"response correlation id {got} != {cid}"
    assert wire.i16(wire.UNSUPPORTED_VERSION) in body[4:], f"response without UNSUPPORTED_VERSION: {body[:64].hex()}"
    return "error"


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions(weir, version):
    with _conn(weir) as c:
        r = wire.api_versions(c, version)
    assert r.error_code == 0
    assert r.api_keys, "empty API list"
    for k, (lo, hi) in r.api_keys.items():
        assert 0 <= lo <= hi, f"api {k}: bad range {lo}..{hi}"
    assert wire.API_VERSIONS in r.api_keys
    lo, hi = r.api_keys[wire.API_VERSIONS]
    assert lo == 0 and hi >= 3, f"ApiVersions advertised {lo}..{hi}"
    # Every client needs these to get started.
    for k in (wire.PRODUCE, wire.FETCH, wire.LIST_OFFSETS, wire.METADATA):
        assert k in r.api_keys, f"api key {k} not advertised"
    if version >= 1:
        assert r.throttle_time_ms is not None and r.throttle_time_ms >= 0


def test_api_versions_same_table_in_every_version(weir):
    tables = []
    for v in (0, 3):
        with _conn(weir) as c:
            tables.append(wire.api_versions(c, v).api_keys)
    assert tables[0] == tables[1]


def test_api_versions_unknown_version_answers_v0_with_error(weir):
    """KIP-511: an ApiVersions version the broker does not know is answered in the v0
    layout with UNSUPPORTED_VERSION and the key list, so the client can retry lower."""
    with _conn(weir) as c:
        r = wire.api_versions(c, 99, response_layout=0)
        assert r.error_code == wire.UNSUPPORTED_VERSION
        assert wire.API_VERSIONS in r.api_keys
        assert r.api_keys[wire.API_VERSIONS][0] == 0
        # The connection stays usable for the retry.
        r2 = wire.api_versions(c, 3)
        assert r2.error_code == 0


def test_unadvertised_api_key_is_rejected(weir):
    advertised = _advertised(weir)
    # A key no Kafka version has, and (if any) a real Kafka key this broker does not advertise.
    keys = [4242] + [k for k in range(0, 75) if k not in advertised][:1]
    for key in keys:
        with _conn(weir) as c:
            cid = c.send(key, 0, b"")
            _expect_unsupported_or_closed(c, cid)
        # The broker is still fine.
        assert _advertised(weir)


def test_version_outside_advertised_range_is_rejected(weir):
    advertised = _advertised(weir)
    lo, hi = advertised[wire.METADATA]
    if hi < 32767:
        # Flexible-looking Metadata body: null topics, no auto-create, no authorized ops, no tags.
        body = wire.uvarint(0) + b"\x00\x00" + wire.EMPTY_TAGGED_FIELDS
        with _conn(weir) as c:
            cid = c.send(wire.METADATA, hi + 1, body, flexible_header=True)
            _expect_unsupported_or_closed(c, cid)
    below = [(k, r[0]) for k, r in advertised.items() if r[0] > 0 and k != wire.API_VERSIONS]
    if below:
        key, min_v = below[0]
        with _conn(weir) as c:
            cid = c.send(key, min_v - 1, b"")
            _expect_unsupported_or_closed(c, cid)
    assert _advertised(weir)


def test_garbage_frame_closes_only_that_connection(weir):
    rng = random.Random(1234)
    with _conn(weir) as bystander:
        assert wire.api_versions(bystander, 0).error_code == 0
        # (a) a length-prefixed frame of random bytes behind a nonsense (negative) api key
        payload = b"\xbe\xef" + bytes(rng.randrange(256) for _ in range(200))
        with _conn(weir) as bad:
            bad.sock.sendall(wire.frame(payload))
            assert wire.wait_closed(bad.sock, 10), "connection with a garbage frame stayed open"
        # (b) not Kafka at all
        with _conn(weir) as bad:
            bad.sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert wire.wait_closed(bad.sock, 10), "connection that sent HTTP stayed open"
        # The other connection was not affected, and new ones work.
        assert wire.api_versions(bystander, 1).error_code == 0
    assert _advertised(weir)


def test_huge_array_length_closes_only_that_connection(weir):
    """A tiny Metadata v0 request announcing 2^31-1 topics: the decoder must fail on
    the missing input, not try to reserve memory for two billion topics."""
    with _conn(weir) as bystander:
        for count in (0x7FFFFFFF, 0x40000000, 0x033C0C00):
            with _conn(weir) as bad:
                bad.send(wire.METADATA, 0, wire.i32(count) + wire.i16(1) + b"a")
                assert wire.wait_closed(bad.sock, 10), "a malformed array length did not close the connection"
        assert wire.api_versions(bystander, 1).error_code == 0
    assert _advertised(weir)


def test_oversized_frame_closes_connection(weir):
    with _conn(weir) as bad:
        bad.sock.sendall(wire.i32(200 * 1024 * 1024) + b"\x00\x12\x00\x00")
        assert wire.wait_closed(bad.sock, 10), "a 200 MiB frame header did not close the connection"
    assert _advertised(weir)


def test_produce_v7_bad_crc_is_corrupt_message_and_not_stored(weir, topic):
    advertised = _advertised(weir)
    lo, hi = advertised[wire.PRODUCE]
    assert lo <= 7 <= hi, f"Produce v7 not in advertised range {lo}..{hi}"
    create_topic(weir.bootstrap, topic, partitions=1)

    with _conn(weir) as c:
        good = wire.record_batch([(b"k0", b"v0"), (b"k1", b"v1")])
        res = wire.produce_v7(c, topic, 0, good)
        assert res.error_code == 0, f"valid batch rejected with error {res.error_code}"
        assert res.base_offset == 0
        assert wire.list_offsets_v1(c, topic, 0, wire.LATEST) == (0, 2)

        bad = wire.record_batch([(b"k2", b"v2")], corrupt_crc=True)
        res = wire.produce_v7(c, topic, 0, bad)
        assert res.error_code == wire.CORRUPT_MESSAGE, f"bad CRC answered with error {res.error_code}"

        # Nothing of the corrupt batch was stored.
        assert wire.list_offsets_v1(c, topic, 0, wire.LATEST) == (0, 2)
        assert wire.list_offsets_v1(c, topic, 0, wire.EARLIEST) == (0, 0)

        # The connection and the partition still work.
        res = wire.produce_v7(c, topic, 0, wire.record_batch([(None, b"v3")]))
        assert res.error_code == 0 and res.base_offset == 2
        assert wire.list_offsets_v1(c, topic, 0, wire.LATEST) == (0, 3)


def test_crc32c_helper_matches_known_vector():
    # RFC 3720 test vector: 32 bytes of zeros.
    assert wire.crc32c(bytes(32)) == 0x8A9136AA
    assert wire.crc32c(b"123456789") == 0xE3069283


def test_record_batch_helper_is_a_valid_v2_batch():
    """Cross-checks the hand-built batch with kafka-python's decoder (helper self-test)."""
    from kafka.record.default_records import DefaultRecordBatch

    b = DefaultRecordBatch(wire.record_batch([(b"k0", b"v0"), (None, b"v1")]))
    assert b.validate_crc()
    assert [(r.offset, r.key, r.value) for r in b] == [(0, b"k0", b"v0"), (1, None, b"v1")]
    assert not DefaultRecordBatch(wire.record_batch([(b"k", b"v")], corrupt_crc=True)).validate_crc()


def test_a_replica_fetch_must_come_from_a_registered_broker(weir, topic):
    """A follower's fetch moves the high watermark, so Weir checks who sends it
    (KIP-903): `replica_state` must name a broker registered at that epoch
    (else STALE_BROKER_EPOCH for the whole fetch); the pre-v15 top-level
    replica id, which carries no epoch, gets UNSUPPORTED_VERSION. Consumers
    are unaffected."""
    from confluent_kafka import TopicCollection
    from lib.clients import admin
    create_topic(weir.bootstrap, topic, partitions=1)
    client = admin(weir.bootstrap)
    described = client.describe_topics(TopicCollection([topic]))[topic].result(timeout=30)
    topic_id = struct.pack(">qq", described.topic_id.get_most_significant_bits(),
                           described.topic_id.get_least_significant_bits())
    with _conn(weir) as c:
        assert wire.produce_v7(c, topic, 0, wire.record_batch([(None, b"v")])).error_code == 0
        assert wire.replica_fetch_v15(c, topic_id, 0, 0, replica_id=7, replica_epoch=1) == (77, [])
        assert wire.replica_fetch_v15(c, topic_id, 0, 0, replica_id=1, replica_epoch=-5) == (77, [])
        legacy = wire.fetch_v4(c, topic, 0, 0, 1 << 20, 1 << 20, replica_id=2)
        assert legacy.error_code == wire.UNSUPPORTED_VERSION and not legacy.records
        fetched = wire.fetch_v4(c, topic, 0, 0, 1 << 20, 1 << 20)
        assert fetched.error_code == 0 and fetched.high_watermark == 1 and fetched.records


def test_describe_topic_partitions_pages_with_a_cursor(weir, topic):
    """KIP-966: topics in name order, at most `response_partition_limit`
    partitions per answer, and a cursor to the first one left out."""
    first, second = f"{topic}-a", f"{topic}-b"
    create_topic(weir.bootstrap, first, partitions=3)
    create_topic(weir.bootstrap, second, partitions=2)
    missing = f"{topic}-missing"
    with _conn(weir) as c:
        wanted = [second, missing, first]
        page, cursor = wire.describe_topic_partitions_v0(c, wanted, 2)
        assert [(t["name"], t["partitions"]) for t in page] == [(first, [0, 1])]
        assert cursor == (first, 2)
        page, cursor = wire.describe_topic_partitions_v0(c, wanted, 2, cursor)
        assert [(t["name"], t["error_code"], t["partitions"]) for t in page] == [
            (first, 0, [2]), (second, 0, [0])]
        assert cursor == (second, 1)
        page, cursor = wire.describe_topic_partitions_v0(c, wanted, 2, cursor)
        assert [(t["name"], t["error_code"], t["partitions"]) for t in page] == [
            (second, 0, [1]), (missing, 3, [])]
        assert cursor is None
        # A cursor outside the requested topics: INVALID_REQUEST on each of them.
        page, cursor = wire.describe_topic_partitions_v0(c, [first], 10, (second, 0))
        assert [(t["name"], t["error_code"]) for t in page] == [(first, 42)] and cursor is None
