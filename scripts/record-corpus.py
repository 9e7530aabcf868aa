#!/usr/bin/env python3
"""Records the fuzz seed corpus (protocol-compat/tests/corpus/) from real clients.

It starts a debug `weir` on 127.0.0.1 whose `advertised.listeners` point at a
small recording proxy, so every client connection (bootstrap and the ones
Metadata sends them to) goes through the proxy. The proxy forwards bytes both
ways unchanged and writes each client request frame, without its 4-byte
length prefix, to `requests/<api key>-<version>-<sha1 prefix>.bin`. The
record batches of every Produce request are cut out into
`batches/<codec>-<sha1 prefix>.bin`.

To keep the corpus small, frames are deduplicated with the correlation id
masked out, at most PER_KIND (Produce: PER_KIND_PRODUCE) frames are kept per (api key, version, client
id, codecs of a Produce), and frames over MAX_FRAME bytes are skipped.

Then it drives kcat, confluent-kafka, kafka-python and the Java tools
(../shared/kafka-tools) through the proxy; a client that fails or is missing
is reported and skipped. The broker is stopped by PID at the end.

Usage (from the repo root, after `cargo build -p weir-broker`, with the
compat-tests venv):

    .venv/bin/python scripts/record-corpus.py [--out protocol-compat/tests/corpus]

It replaces the `*.bin` files of the output's requests/ and batches/.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "compat-tests"))

from lib.weir import HOST, Weir, free_port  # noqa: E402

MAX_FRAME = 64 * 1024
PER_KIND = 6
PER_KIND_PRODUCE = 12
MAX_BATCHES_PER_CODEC = 40
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
KAFKA_TOOLS = (REPO_ROOT / ".." / "shared" / "kafka-tools").resolve()
JAVA_ENV = {"KAFKA_HEAP_OPTS": "-Xmx256m", "KAFKA_LOG_LEVEL": "warn"}


# ------------------------------------------------------------------ Produce request layout


class Reader:
    def __init__(self, buf: bytes, pos: int = 0):
        self.buf, self.pos = buf, pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("truncated")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self) -> int:
        v = shift = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7

    def string(self, flexible: bool) -> bytes | None:
        n = self.uvarint() - 1 if flexible else self.i16()
        return None if n < 0 else self.take(n)

    def bytes_(self, flexible: bool) -> bytes | None:
        n = self.uvarint() - 1 if flexible else self.i32()
        return None if n < 0 else self.take(n)

    def array_len(self, flexible: bool) -> int:
        return self.uvarint() - 1 if flexible else self.i32()

    def tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def produce_batches(frame: bytes) -> list[bytes]:
    """The record batches of a Produce v3-v11 request frame (header included)."""
    key, version = struct.unpack_from(">hh", frame)
    if key != 0 or not 3 <= version <= 11:
        return []
    flexible = version >= 9
    r = Reader(frame, 8)
    r.string(False)  # client id (never compact)
    if flexible:
        r.tagged_fields()
    r.string(flexible)  # transactional id
    r.i16()  # acks
    r.i32()  # timeout
    out = []
    for _ in range(r.array_len(flexible)):
        r.string(flexible)
        for _ in range(r.array_len(flexible)):
            r.i32()
            records = r.bytes_(flexible)
            if flexible:
                r.tagged_fields()
            pos = 0
            while records is not None and pos + 12 <= len(records):
                length = struct.unpack_from(">i", records, pos + 8)[0]
                end = pos + 12 + length
                if length < 0 or end > len(records):
                    break
                out.append(records[pos:end])
                pos = end
        if flexible:
            r.tagged_fields()
    return out


def batch_codec(batch: bytes) -> str:
    if len(batch) < 23 or batch[16] != 2:
        return "other"
    c = batch[22] & 7
    return CODECS[c] if c < len(CODECS) else f"codec{c}"


# ------------------------------------------------------------------ the recorder and proxy


class Recorder:
    def __init__(self, out: Path):
        self.requests = out / "requests"
        self.batches = out / "batches"
        for d in (self.requests, self.batches):
            d.mkdir(parents=True, exist_ok=True)
            for f in d.glob("*.bin"):
                f.unlink()
        self.lock = threading.Lock()
        self.seen: set[str] = set()
        self.kinds: Counter = Counter()
        self.batch_counts: Counter = Counter()
        self.skipped_large = 0

    def record(self, frame: bytes) -> None:
        if len(frame) < 8:
            return
        if len(frame) > MAX_FRAME:
            with self.lock:
                self.skipped_large += 1
            return
        key, version = struct.unpack_from(">hh", frame)
        (cid_len,) = struct.unpack_from(">h", frame, 8)
        client_id = frame[10:10 + cid_len] if cid_len > 0 else b""
        try:
            batches = produce_batches(frame) if key == 0 else []
        except ValueError:
            batches = []
        codecs = tuple(sorted({batch_codec(b) for b in batches}))
        masked = frame[:4] + b"\0\0\0\0" + frame[8:]
        digest = hashlib.sha1(masked).hexdigest()
        kind = (key, version, client_id, codecs)
        with self.lock:
            if digest in self.seen or self.kinds[kind] >= (PER_KIND_PRODUCE if key == 0 else PER_KIND):
                return
            self.seen.add(digest)
            self.kinds[kind] += 1
            name = f"{key}-{version}-{hashlib.sha1(frame).hexdigest()[:12]}.bin"
            (self.requests / name).write_bytes(frame)
            for b in batches:
                codec = batch_codec(b)
                if self.batch_counts[codec] >= MAX_BATCHES_PER_CODEC:
                    continue
                path = self.batches / f"{codec}-{hashlib.sha1(b).hexdigest()[:12]}.bin"
                if not path.exists():
                    path.write_bytes(b)
                    self.batch_counts[codec] += 1


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)



def _shutdown_both(*socks: socket.socket) -> None:
    """Ends both directions of a proxied connection; either may be gone already."""
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

class Proxy:
    """Listens on 127.0.0.1:port and forwards every connection to upstream_port."""

    def __init__(self, port: int, upstream_port: int, recorder: Recorder):
        self.upstream_port, self.recorder = upstream_port, recorder
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((HOST, port))
        self.server.listen(128)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.closed = True
        self.server.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.upstream_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                prefix = recv_exact(client, 4)
                if prefix is None:
                    break
                (size,) = struct.unpack(">i", prefix)
                frame = recv_exact(client, size) if size >= 0 else None
                if frame is None:
                    break
                try:
                    self.recorder.record(frame)
                except Exception:  # noqa: BLE001 - recording must never break the traffic
                    traceback.print_exc()
                upstream.sendall(prefix + frame)
        except OSError:
            pass
        finally:
            _shutdown_both(client, upstream)

    def _responses(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown_both(client, upstream)


# ------------------------------------------------------------------ clients


def run(cmd: list[str], input: str | None = None, timeout: float = 90, env: dict | None = None) -> None:
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=full_env,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}\n{p.stderr[-2000:]}")


def records(n: int, tag: str) -> list[tuple[bytes, bytes]]:
    return [(f"key-{i % 7}".encode(), f"{tag} value {i} lorem ipsum dolor sit amet".encode()) for i in range(n)]


def kcat_clients(bootstrap: str, tag: str) -> None:
    run(["kcat", "-b", bootstrap, "-L"], timeout=30)
    for codec in CODECS:
        topic = f"{tag}-kcat-{codec}"
        lines = "\n".join(f"{k.decode()}:{v.decode()}" for k, v in records(20, codec)) + "\n"
        run(["kcat", "-b", bootstrap, "-P", "-t", topic, "-K:", "-z", codec, "-X", "linger.ms=50"],
            input=lines, timeout=60)
        run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q"], timeout=60)
    run(["kcat", "-b", bootstrap, "-G", f"{tag}-kcat-group", f"{tag}-kcat-gzip", "-o", "beginning", "-e", "-q"],
        timeout=60)


def confluent_clients(bootstrap: str, tag: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                       NewTopic, OffsetSpec)

    conf = {"bootstrap.servers": bootstrap, "broker.address.family": "v4", "socket.timeout.ms": 10000}
    a = AdminClient(conf)
    topics = [f"{tag}-ck-{c}" for c in CODECS]
    for f in a.create_topics([NewTopic(t, num_partitions=2, replication_factor=1) for t in topics],
                             operation_timeout=30).values():
        f.result(30)
    time.sleep(1)
    a.list_topics(timeout=10)
    try:
        from confluent_kafka import TopicCollection

        for f in a.describe_topics(TopicCollection(topics[:2])).values():
            f.result(30)
    except ImportError:
        pass
    a.describe_cluster().result(30)
    res = ConfigResource(ConfigResource.Type.TOPIC, topics[0])
    for f in a.describe_configs([res]).values():
        f.result(30)
    inc = ConfigResource(ConfigResource.Type.TOPIC, topics[0], incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    for f in a.incremental_alter_configs([inc]).values():
        f.result(30)
    for f in a.alter_configs([ConfigResource(ConfigResource.Type.TOPIC, topics[1],
                                             set_config={"retention.ms": "7200000"})]).values():
        f.result(30)
    for f in a.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "1")]).values():
        f.result(30)

    for codec, topic in zip(CODECS, topics):
        p = Producer({**conf, "enable.idempotence": True, "compression.type": codec, "linger.ms": 20})
        for k, v in records(30, codec):
            p.produce(topic, key=k, value=v, headers=[("h", b"x")] if k.endswith(b"1") else None)
        assert p.flush(30) == 0
    for codec, topic in zip(CODECS, topics):
        # Plain (not idempotent) producers, bigger batches of uneven records, null keys and values.
        p = Producer({**conf, "compression.type": codec, "linger.ms": 50, "batch.num.messages": 100})
        for i in range(120):
            if i % 40 == 39:
                p.flush(30)  # several requests, so several batches per codec
            key = None if i % 11 == 0 else f"k{i % 13}".encode()
            value = None if i % 17 == 5 else (b"v" * (i * 7 % 300))
            p.produce(topic, key=key, value=value, partition=i % 2,
                      headers=[("a", b"1"), ("b", None)] if i % 9 == 0 else None)
        assert p.flush(30) == 0
    p = Producer({**conf, "acks": 1, "linger.ms": 0})
    p.produce(topics[0], value=b"acks=1, no key")
    p.produce(topics[0], key=b"tombstone", value=None)
    assert p.flush(30) == 0

    for f in a.create_partitions([NewPartitions(topics[1], 3)]).values():
        f.result(30)
    for f in a.list_offsets({TopicPartition(topics[0], 0): OffsetSpec.latest(),
                             TopicPartition(topics[0], 1): OffsetSpec.earliest()}).values():
        f.result(30)
    for f in a.delete_records([TopicPartition(topics[0], 0, 2)]).values():
        f.result(30)

    for protocol in ("classic", "consumer"):
        group = f"{tag}-ck-{protocol}"
        gconf = {**conf, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
        if protocol == "consumer":
            gconf["group.protocol"] = "consumer"
        else:
            gconf["session.timeout.ms"] = 6000
        c = Consumer(gconf)
        c.subscribe(topics[2:4])
        got, deadline = 0, time.monotonic() + 40
        while got < 20 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got += 1
                if got % 5 == 0:
                    c.commit(message=m, asynchronous=False)
        c.committed([TopicPartition(topics[2], 0)], timeout=10)
        c.close()

    for f in [a.list_consumer_groups()]:
        f.result(30)
    for f in a.describe_consumer_groups([f"{tag}-ck-classic", f"{tag}-ck-consumer"]).values():
        try:
            f.result(30)
        except Exception:  # noqa: BLE001
            pass
    from confluent_kafka import ConsumerGroupTopicPartitions

    for f in a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(f"{tag}-ck-classic")]).values():
        f.result(30)
    for f in a.delete_consumer_groups([f"{tag}-ck-classic"]).values():
        try:
            f.result(30)
        except Exception:  # noqa: BLE001
            pass
    for f in a.delete_topics(topics[4:], operation_timeout=30).values():
        f.result(30)


def kafka_python_clients(bootstrap: str, tag: str) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    topic = f"{tag}-kp"
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.list_topics()
    time.sleep(1)
    for codec in ("gzip", "lz4", "zstd", "snappy", None):
        p = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=20)
        for k, v in records(15, str(codec)):
            p.send(topic, key=k, value=v, headers=[("h", b"v")])
        p.flush(30)
        p.close(10)
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{tag}-kp-group",
                      auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=8000)
    n = 0
    for _ in c:
        n += 1
        if n >= 30:
            break
    c.commit()
    c.close()
    admin.list_consumer_groups()
    admin.describe_consumer_groups([f"{tag}-kp-group"])
    admin.list_consumer_group_offsets(f"{tag}-kp-group")
    admin.delete_topics([topic])
    admin.close()


def java_clients(bootstrap: str, tag: str) -> None:
    if shutil.which("java") is None:
        raise RuntimeError("java not on PATH")

    def tool(name: str, *args: str, input: str | None = None, timeout: float = 120) -> None:
        run([str(KAFKA_TOOLS / "bin" / f"{name}.sh"), "--bootstrap-server", bootstrap, *args], input=input,
            timeout=timeout, env=JAVA_ENV)

    topic = f"{tag}-java"
    tool("kafka-topics", "--create", "--topic", topic, "--partitions", "2", "--replication-factor", "1")
    tool("kafka-topics", "--describe", "--topic", topic)
    for codec in CODECS:
        lines = "\n".join(f"{k.decode()}\t{v.decode()}" for k, v in records(20, codec)) + "\n"
        tool("kafka-console-producer", "--topic", topic, "--producer-property", f"compression.type={codec}",
             "--producer-property", "linger.ms=50", "--property", "parse.key=true", input=lines)
    tool("kafka-console-consumer", "--topic", topic, "--from-beginning", "--max-messages", "40",
         "--group", f"{tag}-java-group", "--timeout-ms", "30000")
    tool("kafka-consumer-groups", "--describe", "--group", f"{tag}-java-group")
    offsets = Path(tempfile.mkdtemp(prefix="corpus-")) / "delete-records.json"
    offsets.write_text(f'{{"partitions": [{{"topic": "{topic}", "partition": 0, "offset": 1}}], "version": 1}}')
    tool("kafka-delete-records", "--offset-json-file", str(offsets))
    shutil.rmtree(offsets.parent, ignore_errors=True)
    tool("kafka-log-dirs", "--describe", "--topic-list", topic)
    tool("kafka-get-offsets", "--topic", topic)
    tool("kafka-topics", "--alter", "--topic", topic, "--partitions", "3")
    tool("kafka-topics", "--delete", "--topic", topic)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "protocol-compat" / "tests" / "corpus")
    ap.add_argument("--clients", default="kcat,confluent,kafka-python,java")
    args = ap.parse_args()

    recorder = Recorder(args.out)
    proxy_port = free_port()
    weir = Weir(overrides={"advertised.listeners": f"PLAINTEXT://{HOST}:{proxy_port}",
                           "group.initial.rebalance.delay.ms": 0}, name="weir-corpus")
    proxy = Proxy(proxy_port, weir.port, recorder)
    bootstrap = f"{HOST}:{proxy_port}"
    failures = []
    clients = {"kcat": kcat_clients, "confluent": confluent_clients, "kafka-python": kafka_python_clients,
               "java": java_clients}
    try:
        weir.start()
        for name in args.clients.split(","):
            tag = f"corpus-{uuid.uuid4().hex[:6]}"
            started = time.monotonic()
            try:
                clients[name](bootstrap, tag)
                print(f"{name}: ok in {time.monotonic() - started:.0f}s", flush=True)
            except Exception as e:  # noqa: BLE001 - one client's failure must not lose the others' frames
                failures.append(name)
                print(f"{name}: FAILED after {time.monotonic() - started:.0f}s: {e!r}", flush=True)
                traceback.print_exc()
        time.sleep(1)
    finally:
        proxy.close()
        weir.cleanup()

    per_api = Counter(int(f.name.split("-")[0]) for f in recorder.requests.glob("*.bin"))
    size = sum(f.stat().st_size for d in (recorder.requests, recorder.batches) for f in d.glob("*.bin"))
    print("requests per api key:", dict(sorted(per_api.items())))
    print("batches per codec:", dict(recorder.batch_counts))
    print(f"total {sum(per_api.values())} requests, {sum(recorder.batch_counts.values())} batches, {size} bytes;"
          f" {recorder.skipped_large} frames over {MAX_FRAME} bytes skipped")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
