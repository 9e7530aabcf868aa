"""Hand-built Kafka protocol frames (from the protocol guide), no client library.

Used by test_wire.py and by the harness' readiness probe. Only the handful of
request/response layouts the tests need are implemented; every layout names the
API version it is for.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# API keys (Kafka protocol guide).
PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
API_VERSIONS = 18
CREATE_TOPICS = 19

# Error codes.
NONE = 0
CORRUPT_MESSAGE = 2
UNSUPPORTED_VERSION = 35
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
INVALID_TOPIC_EXCEPTION = 17
INVALID_RECORD = 87

# Frames larger than this are never read by the tests (the broker's limit is 100 MiB).
MAX_RESPONSE = 64 * 1024 * 1024


# ---------------------------------------------------------------- primitives

def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    """STRING / NULLABLE_STRING: int16 length then UTF-8 bytes (-1 = null)."""
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def kbytes(b: bytes | None) -> bytes:
    """BYTES / NULLABLE_BYTES / RECORDS: int32 length then the bytes (-1 = null)."""
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag signed varint (VARINT and VARLONG share the encoding)."""
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


EMPTY_TAGGED_FIELDS = uvarint(0)


class Reader:
    """Cursor over a response body."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"short response: need {n} bytes at {self.pos}, have {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self) -> int:
        return struct.unpack(">b", self._take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self._take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self._take(8))[0]

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self._take(n).decode()

    def uvarint(self) -> int:
        shift = 0
        result = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def compact_array_len(self) -> int:
        return self.uvarint() - 1

    def compact_string(self) -> str | None:
        n = self.uvarint() - 1
        return None if n < 0 else self._take(n).decode()

    def uuid(self) -> bytes:
        return self._take(16)

    def tagged_fields(self) -> dict[int, "Reader"]:
        """The tagged fields that follow, by tag, each as a Reader over its bytes."""
        fields = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            fields[tag] = Reader(self._take(self.uvarint()))
        return fields

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# ---------------------------------------------------------------- framing

def request_header_v1(api_key: int, api_version: int, correlation_id: int,
                      client_id: str | None = "weir-wire-test") -> bytes:
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def request_header_v2(api_key: int, api_version: int, correlation_id: int,
                      client_id: str | None = "weir-wire-test") -> bytes:
    return request_header_v1(api_key, api_version, correlation_id, client_id) + EMPTY_TAGGED_FIELDS


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


class Closed(Exception):
    """The broker closed the connection (EOF or reset)."""


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed(str(e)) from e
        if not chunk:
            raise Closed(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    (n,) = struct.unpack(">i", recv_exact(sock, 4))
    if n < 0 or n > MAX_RESPONSE:
        raise ValueError(f"bad response frame length {n}")
    return recv_exact(sock, n)


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def wait_closed(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True when the peer closes (EOF/reset) within `timeout`; False if it stays open.

    Any bytes the broker sends first (e.g. an error response) are read and ignored.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        if not chunk:
            return True


class Conn:
    """One Kafka connection: send a request, read the response with the same correlation id."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = connect(host, port, timeout)
        self.next_cid = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, api_key: int, api_version: int, body: bytes, flexible_header: bool = False) -> int:
        cid = self.next_cid
        self.next_cid += 1
        hdr = (request_header_v2 if flexible_header else request_header_v1)(api_key, api_version, cid)
        self.sock.sendall(frame(hdr + body))
        return cid

    def recv(self, cid: int, flexible_header: bool = False) -> Reader:
        """Reads one response; checks the correlation id. Returns a Reader over the body."""
        r = Reader(recv_frame(self.sock))
        got = r.i32()
        if got != cid:
            raise AssertionError(f"correlation id {got} != {cid}")
        if flexible_header:
            r.skip_tagged_fields()
        return r

    def request(self, api_key: int, api_version: int, body: bytes,
                flexible_request: bool = False, flexible_response: bool = False) -> Reader:
        cid = self.send(api_key, api_version, body, flexible_request)
        return self.recv(cid, flexible_response)


# ---------------------------------------------------------------- ApiVersions (key 18)

@dataclass
class ApiVersionsResponse:
    error_code: int
    api_keys: dict[int, tuple[int, int]] = field(default_factory=dict)
    throttle_time_ms: int | None = None


def api_versions_body(version: int) -> bytes:
    if version >= 3:
        return compact_string("weir-wire-test") + compact_string("0.1") + EMPTY_TAGGED_FIELDS
    return b""


def parse_api_versions(r: Reader, version: int) -> ApiVersionsResponse:
    """ApiVersions responses always use response header v0 (no tagged fields), per KIP-511."""
    err = r.i16()
    keys: dict[int, tuple[int, int]] = {}
    if version >= 3:
        for _ in range(r.compact_array_len()):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            r.skip_tagged_fields()
            keys[k] = (lo, hi)
        throttle = r.i32()
        r.skip_tagged_fields()
        return ApiVersionsResponse(err, keys, throttle)
    for _ in range(r.i32()):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        keys[k] = (lo, hi)
    throttle = r.i32() if version >= 1 else None
    return ApiVersionsResponse(err, keys, throttle)


def api_versions(conn: Conn, version: int = 0, response_layout: int | None = None) -> ApiVersionsResponse:
    """Sends ApiVersions `version`; parses the answer as `response_layout` (default: the same version)."""
    cid = conn.send(API_VERSIONS, version, api_versions_body(version), flexible_header=version >= 3)
    return parse_api_versions(conn.recv(cid), version if response_layout is None else response_layout)


def probe_api_versions(host: str, port: int, timeout: float = 2.0) -> bool:
    """Readiness probe: ApiVersions v0 gets an answer (any error code)."""
    try:
        with Conn(host, port, timeout) as c:
            api_versions(c, 0)
        return True
    except (OSError, Closed, ValueError, AssertionError):
        return False


# ---------------------------------------------------------------- record batches (magic 2)

_CRC32C_TABLE: list[int] = []


def _crc32c_table() -> list[int]:
    if not _CRC32C_TABLE:
        for n in range(256):
            c = n
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _CRC32C_TABLE.append(c)
    return _CRC32C_TABLE


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli). Uses the `crc32c` package when present, else a table."""
    try:
        import crc32c as _c  # type: ignore

        return _c.crc32c(data)
    except ImportError:
        t = _crc32c_table()
        crc = 0xFFFFFFFF
        for b in data:
            crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF


def encode_record(offset_delta: int, timestamp_delta: int, key: bytes | None, value: bytes | None,
                  headers: list[tuple[str, bytes | None]] = ()) -> bytes:
    body = bytearray()
    body += i8(0)  # attributes (unused)
    body += varint(timestamp_delta)
    body += varint(offset_delta)
    for b in (key, value):
        if b is None:
            body += varint(-1)
        else:
            body += varint(len(b)) + b
    body += varint(len(headers))
    for hk, hv in headers:
        kb = hk.encode()
        body += varint(len(kb)) + kb
        body += varint(-1) if hv is None else varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def record_batch(records: list[tuple[bytes | None, bytes | None]], base_timestamp: int | None = None,
                 producer_id: int = -1, producer_epoch: int = -1, base_sequence: int = -1,
                 corrupt_crc: bool = False) -> bytes:
    """An uncompressed v2 record batch with base offset 0 (the broker assigns offsets)."""
    recs = b"".join(encode_record(i, 0, k, v) for i, (k, v) in enumerate(records))
    return raw_batch(recs, len(records), base_timestamp=base_timestamp, producer_id=producer_id,
                     producer_epoch=producer_epoch, base_sequence=base_sequence, corrupt_crc=corrupt_crc)


def raw_batch(section: bytes, count: int, attributes: int = 0, base_timestamp: int | None = None,
              producer_id: int = -1, producer_epoch: int = -1, base_sequence: int = -1,
              corrupt_crc: bool = False) -> bytes:
    """A v2 batch header (base offset 0, a correct CRC unless `corrupt_crc`) around any
    records section: for batches whose records a producer could get wrong."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    after_crc = (
        i16(attributes)  # bits 0-2 codec, 3 LogAppendTime, 4 transactional, 5 control
        + i32(count - 1)  # lastOffsetDelta
        + i64(base_timestamp)  # baseTimestamp
        + i64(base_timestamp)  # maxTimestamp
        + i64(producer_id)
        + i16(producer_epoch)
        + i32(base_sequence)
        + i32(count)
        + section
    )
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    # partitionLeaderEpoch + magic + crc + rest; batchLength counts everything after itself.
    after_length = i32(-1) + i8(2) + u32(crc) + after_crc
    return i64(0) + i32(len(after_length)) + after_length


# ---------------------------------------------------------------- Produce v7 (key 0)

@dataclass
class PartitionProduceResult:
    partition: int
    error_code: int
    base_offset: int
    log_append_time_ms: int
    log_start_offset: int


def produce_v7_body(topic: str, partition: int, records: bytes, acks: int = -1,
                    timeout_ms: int = 10000) -> bytes:
    return (
        string(None)  # transactional_id
        + i16(acks)
        + i32(timeout_ms)
        + i32(1) + string(topic)
        + i32(1) + i32(partition) + kbytes(records)
    )


def parse_produce_v7(r: Reader) -> dict[tuple[str, int], PartitionProduceResult]:
    out = {}
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            p = PartitionProduceResult(r.i32(), r.i16(), r.i64(), r.i64(), r.i64())
            out[(name, p.partition)] = p
    r.i32()  # throttle_time_ms
    return out


def produce_v7(conn: Conn, topic: str, partition: int, records: bytes, acks: int = -1) -> PartitionProduceResult:
    r = conn.request(PRODUCE, 7, produce_v7_body(topic, partition, records, acks))
    return parse_produce_v7(r)[(topic, partition)]


@dataclass
class LeaderHint:
    """KIP-951: the leader a refused partition names, and the endpoints the response carries."""
    error_code: int
    leader_id: int
    leader_epoch: int
    endpoints: dict[int, tuple[str, int]]


def _leader_hint(error_code: int, partition_tags: dict[int, Reader], current_leader_tag: int,
                 response_tags: dict[int, Reader]) -> LeaderHint:
    leader_id, leader_epoch = -1, -1
    if current_leader_tag in partition_tags:
        leader = partition_tags[current_leader_tag]
        leader_id, leader_epoch = leader.i32(), leader.i32()
    endpoints = {}
    if 0 in response_tags:
        nodes = response_tags[0]
        for _ in range(nodes.compact_array_len()):
            node_id, host, port = nodes.i32(), nodes.compact_string(), nodes.i32()
            nodes.compact_string()  # rack
            nodes.skip_tagged_fields()
            endpoints[node_id] = (host, port)
    return LeaderHint(error_code, leader_id, leader_epoch, endpoints)


def produce_v10(conn: Conn, topic: str, partition: int, records: bytes, acks: int = -1) -> LeaderHint:
    """Produce v10 (flexible) of one batch; the partition's error and KIP-951 leader hint."""
    body = (
        uvarint(0)  # transactional_id: null
        + i16(acks) + i32(10000)
        + uvarint(2) + compact_string(topic)
        + uvarint(2) + i32(partition) + uvarint(len(records) + 1) + records + EMPTY_TAGGED_FIELDS
        + EMPTY_TAGGED_FIELDS  # topic
        + EMPTY_TAGGED_FIELDS
    )
    r = conn.request(PRODUCE, 10, body, flexible_request=True, flexible_response=True)
    found = None
    for _ in range(r.compact_array_len()):
        name = r.compact_string()
        for _ in range(r.compact_array_len()):
            index, error = r.i32(), r.i16()
            r.i64(), r.i64(), r.i64()  # base_offset, log_append_time_ms, log_start_offset
            for _ in range(r.compact_array_len()):  # record_errors
                r.i32(), r.compact_string(), r.skip_tagged_fields()
            r.compact_string()  # error_message
            tags = r.tagged_fields()
            if name == topic and index == partition:
                found = (error, tags)
        r.skip_tagged_fields()
    r.i32()  # throttle_time_ms
    if found is None:
        raise AssertionError(f"Produce response has no {topic}-{partition}")
    return _leader_hint(found[0], found[1], 0, r.tagged_fields())


def fetch_v16(conn: Conn, topic_id: bytes, partition: int, offset: int, current_leader_epoch: int = -1) -> LeaderHint:
    """Fetch v16 (flexible, topics by id) of one partition; its error and KIP-951 leader hint."""
    body = (
        i32(0) + i32(0) + i32(1 << 20)  # max_wait_ms, min_bytes, max_bytes
        + i8(0) + i32(0) + i32(-1)  # isolation_level, session_id, session_epoch: no session
        + uvarint(2) + topic_id
        + uvarint(2) + i32(partition) + i32(current_leader_epoch) + i64(offset) + i32(-1) + i64(-1) + i32(1 << 20)
        + EMPTY_TAGGED_FIELDS
        + EMPTY_TAGGED_FIELDS  # topic
        + uvarint(1)  # forgotten_topics_data: empty
        + compact_string("")  # rack_id
        + EMPTY_TAGGED_FIELDS
    )
    r = conn.request(FETCH, 16, body, flexible_request=True, flexible_response=True)
    r.i32(), r.i16(), r.i32()  # throttle_time_ms, error_code, session_id
    found = None
    for _ in range(r.compact_array_len()):
        tid = r.uuid()
        for _ in range(r.compact_array_len()):
            index, error = r.i32(), r.i16()
            r.i64(), r.i64(), r.i64()  # high_watermark, last_stable_offset, log_start_offset
            for _ in range(max(r.compact_array_len(), 0)):  # aborted_transactions
                r.i64(), r.i64(), r.skip_tagged_fields()
            r.i32()  # preferred_read_replica
            size = r.uvarint() - 1
            if size > 0:
                r._take(size)
            tags = r.tagged_fields()
            if tid == topic_id and index == partition:
                found = (error, tags)
        r.skip_tagged_fields()
    if found is None:
        raise AssertionError(f"Fetch response has no partition {partition}")
    return _leader_hint(found[0], found[1], 1, r.tagged_fields())


def replica_fetch_v15(conn: Conn, topic_id: bytes, partition: int, offset: int, replica_id: int,
                      replica_epoch: int) -> tuple[int, list[int]]:
    """Fetch v15 as a follower (`replica_state`, tag 1): the top-level error and the partitions' errors."""
    replica_state = i32(replica_id) + i64(replica_epoch) + EMPTY_TAGGED_FIELDS
    body = (
        i32(0) + i32(0) + i32(1 << 20)  # max_wait_ms, min_bytes, max_bytes
        + i8(0) + i32(0) + i32(-1)  # isolation_level, session_id, session_epoch: no session
        + uvarint(2) + topic_id
        + uvarint(2) + i32(partition) + i32(-1) + i64(offset) + i32(-1) + i64(-1) + i32(1 << 20)
        + EMPTY_TAGGED_FIELDS
        + EMPTY_TAGGED_FIELDS  # topic
        + uvarint(1)  # forgotten_topics_data: empty
        + compact_string("")  # rack_id
        + uvarint(1) + uvarint(1) + uvarint(len(replica_state)) + replica_state
    )
    r = conn.request(FETCH, 15, body, flexible_request=True, flexible_response=True)
    r.i32()  # throttle_time_ms
    error, errors = r.i16(), []
    r.i32()  # session_id
    for _ in range(r.compact_array_len()):
        r.uuid()
        for _ in range(r.compact_array_len()):
            r.i32()
            errors.append(r.i16())
            r.i64(), r.i64(), r.i64()
            for _ in range(max(r.compact_array_len(), 0)):
                r.i64(), r.i64(), r.skip_tagged_fields()
            r.i32()
            size = r.uvarint() - 1
            if size > 0:
                r._take(size)
            r.skip_tagged_fields()
        r.skip_tagged_fields()
    return error, errors


# ---------------------------------------------------------------- Metadata v5 (key 3)

def metadata_partition(conn: Conn, topic: str, partition: int) -> dict:
    """Metadata v5 of one topic: the partition's error, leader, replicas, ISR and offline replicas."""
    r = conn.request(METADATA, 5, i32(1) + string(topic) + i8(0))
    r.i32()  # throttle_time_ms
    for _ in range(r.i32()):  # brokers
        r.i32(), r.string(), r.i32(), r.string()
    r.string(), r.i32()  # cluster_id, controller_id
    ids = lambda: [r.i32() for _ in range(r.i32())]  # noqa: E731
    found = None
    for _ in range(r.i32()):
        r.i16()
        name = r.string()
        r.i8()  # is_internal
        for _ in range(r.i32()):
            entry = {"error_code": r.i16(), "partition": r.i32(), "leader": r.i32()}
            entry.update(replicas=ids(), isr=ids(), offline_replicas=ids())
            if name == topic and entry["partition"] == partition:
                found = entry
    if found is None:
        raise AssertionError(f"Metadata has no {topic}-{partition}")
    return found


# ---------------------------------------------------------------- DescribeTopicPartitions v0 (key 75)

DESCRIBE_TOPIC_PARTITIONS = 75


def describe_topic_partitions_v0(conn: Conn, topics: list[str], limit: int,
                                 cursor: tuple[str, int] | None = None) -> tuple[list[dict], tuple[str, int] | None]:
    """DescribeTopicPartitions v0: per topic its error, name, partition indexes, and each partition's
    leader and offline replicas; and the next cursor."""
    body = uvarint(len(topics) + 1) + b"".join(compact_string(t) + EMPTY_TAGGED_FIELDS for t in topics) + i32(limit)
    if cursor is None:
        body += i8(-1)
    else:
        body += i8(1) + compact_string(cursor[0]) + i32(cursor[1]) + EMPTY_TAGGED_FIELDS
    body += EMPTY_TAGGED_FIELDS
    r = conn.request(DESCRIBE_TOPIC_PARTITIONS, 0, body, flexible_request=True, flexible_response=True)
    r.i32()  # throttle_time_ms
    ids = lambda: [r.i32() for _ in range(max(r.compact_array_len(), 0))]  # noqa: E731
    described = []
    for _ in range(r.compact_array_len()):
        error, name = r.i16(), r.compact_string()
        r.uuid(), r.i8()  # topic_id, is_internal
        partitions, leaders, offline = [], {}, {}
        for _ in range(r.compact_array_len()):
            r.i16()
            index = r.i32()
            leaders[index] = r.i32()
            r.i32()  # leader_epoch
            ids(), ids(), ids(), ids()  # replicas, ISR, ELR, last known ELR
            offline[index] = ids()
            r.skip_tagged_fields()
            partitions.append(index)
        r.i32()  # topic_authorized_operations
        r.skip_tagged_fields()
        described.append({"error_code": error, "name": name, "partitions": partitions, "leaders": leaders,
                          "offline_replicas": offline})
    next_cursor = None
    if r.i8() >= 0:
        next_cursor = (r.compact_string(), r.i32())
        r.skip_tagged_fields()
    return described, next_cursor


# ---------------------------------------------------------------- ListOffsets v1 (key 2)

LATEST = -1
EARLIEST = -2


def list_offsets_v1(conn: Conn, topic: str, partition: int, timestamp: int) -> tuple[int, int]:
    """Returns (error_code, offset)."""
    body = i32(-1) + i32(1) + string(topic) + i32(1) + i32(partition) + i64(timestamp)
    r = conn.request(LIST_OFFSETS, 1, body)
    result = None
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            idx, err = r.i32(), r.i16()
            r.i64()  # timestamp
            off = r.i64()
            if name == topic and idx == partition:
                result = (err, off)
    if result is None:
        raise AssertionError(f"ListOffsets response has no {topic}-{partition}")
    return result


# ---------------------------------------------------------------- Fetch v4 (key 1)

@dataclass
class PartitionFetchResult:
    error_code: int
    high_watermark: int
    records: bytes


def fetch_v4(conn: Conn, topic: str, partition: int, offset: int, max_bytes: int,
             partition_max_bytes: int, max_wait_ms: int = 0, min_bytes: int = 0,
             replica_id: int = -1) -> PartitionFetchResult:
    body = (
        i32(replica_id)  # -1: a consumer
        + i32(max_wait_ms) + i32(min_bytes) + i32(max_bytes)
        + i8(0)  # isolation_level: read_uncommitted
        + i32(1) + string(topic)
        + i32(1) + i32(partition) + i64(offset) + i32(partition_max_bytes)
    )
    r = conn.request(FETCH, 4, body)
    r.i32()  # throttle_time_ms
    result = None
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            index, error, high_watermark = r.i32(), r.i16(), r.i64()
            r.i64()  # last_stable_offset
            for _ in range(max(r.i32(), 0)):  # aborted_transactions
                r.i64()
                r.i64()
            size = r.i32()
            records = r._take(size) if size > 0 else b""
            if name == topic and index == partition:
                result = PartitionFetchResult(error, high_watermark, records)
    if result is None:
        raise AssertionError(f"Fetch response has no {topic}-{partition}")
    return result


# ---------------------------------------------------------------- DescribeQuorum v0 (key 55)

DESCRIBE_QUORUM = 55


def describe_quorum_v0(conn: Conn) -> tuple[int, int, int]:
    """DescribeQuorum v0 for `__cluster_metadata-0`: (error code, leader id, leader epoch)
    as this node answers it (it asks the active controller)."""
    body = (uvarint(2) + compact_string("__cluster_metadata")  # one topic
            + uvarint(2) + i32(0) + EMPTY_TAGGED_FIELDS  # one partition
            + EMPTY_TAGGED_FIELDS + EMPTY_TAGGED_FIELDS)
    r = conn.request(DESCRIBE_QUORUM, 0, body, flexible_request=True, flexible_response=True)
    top_error = r.i16()
    if top_error:
        return top_error, -1, -1
    r.compact_array_len()  # topics
    r._take(r.uvarint() - 1)  # topic name
    r.compact_array_len()  # partitions
    r.i32()  # partition index
    return r.i16(), r.i32(), r.i32()


# ---------------------------------------------------------------- Heartbeat v0 (key 12)

HEARTBEAT = 12


def heartbeat_v0(conn: Conn, group_id: str, generation_id: int, member_id: str) -> int:
    """Returns the error code (NOT_COORDINATOR from a broker that does not coordinate the group)."""
    r = conn.request(HEARTBEAT, 0, string(group_id) + i32(generation_id) + string(member_id))
    return r.i16()
