"""What every client scenario of the matrix shares (the Python ones import it; kafkajs.js
and sarama/main.go implement the same rules; README.md, "Client matrix", has the overview).

Records of one (scenario, codec) cell, i = 0..n-1:
  key       "key-<i % 100>"
  value     "v<i, 6 digits>-<codec>-" + "abcdefghij" * 8   (compressible)
  headers   [("idx", "<i>"), ("codec", "<codec>")]            (order kept)
  timestamp base_ts + i  (explicit CreateTime; base_ts = now - 1 h, rounded to the second)

The check after consuming every partition of the topic from the beginning (assign mode):
exact count, every i exactly once, key/headers/timestamp equal to what was sent, all records
of a key in one partition, and within a partition the records of each key in produce order.

Scenario `subscribe` (one cell, the first codec given, plain producer, to keep time down): a
fresh group (group_name(topic)) subscribes to the 6-partition topic with auto.offset.reset =
earliest, reads everything, commits, and the same check() runs on what it read; then the
committed offsets must equal the end offsets (check_committed), and a second consumer of the
same group (where a client makes that cheap) must get its partitions and read nothing.

Output: one line per cell
  RESULT client=<c> scenario=<s> codec=<codec> status=<pass|fail|unsupported|needs-groups> records=<n> secs=<t> detail=<text>
(`detail` is last and runs to the end of the line.)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import uuid
from dataclasses import dataclass

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
SCENARIOS = ["produce-consume", "idempotent", "subscribe"]
SUBSCRIBE = "subscribe"  # one cell, with the first codec of --codecs
PARTITIONS = 6
KEYS = 100
PAD = "abcdefghij" * 8


def key_of(i: int) -> str:
    return f"key-{i % KEYS}"


def value_of(i: int, codec: str) -> str:
    return f"v{i:06d}-{codec}-{PAD}"


def headers_of(i: int, codec: str) -> list[tuple[str, bytes]]:
    return [("idx", str(i).encode()), ("codec", codec.encode())]


def index_of(value: bytes | str) -> int:
    if isinstance(value, bytes):
        value = value.decode()
    return int(value[1:7])


def base_timestamp() -> int:
    return (int(time.time()) - 3600) * 1000


def topic_name(client: str, scenario: str, codec: str) -> str:
    return f"matrix-{client}-{scenario}-{codec}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def group_name(topic: str) -> str:
    return f"group-{topic}"


def check_committed(committed: dict[int, int | None], ends: dict[int, int], who: str = "committed") -> list[str]:
    """Committed offset per partition (None = none) must be the end offset of every partition."""
    bad = [f"p{p}: {committed.get(p)} != end {e}" for p, e in sorted(ends.items()) if committed.get(p) != e]
    if len(ends) != PARTITIONS:
        bad.insert(0, f"{len(ends)} end offsets, not {PARTITIONS}")
    return [f"{who} offsets: " + ", ".join(bad[:6])] if bad else []


def cells(scenarios: list[str], codecs: list[str]) -> list[tuple[str, str]]:
    """(scenario, codec) pairs to run: every codec, but only the first for `subscribe`."""
    return [(s, cd) for s in scenarios for cd in (codecs[:1] if s == SUBSCRIBE else codecs)]


@dataclass
class Got:
    """One consumed record, as the client returned it."""
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None  # None = the client cannot show headers
    timestamp: int | None  # None = the client cannot show timestamps


@dataclass
class Expect:
    n: int
    codec: str
    base_ts: int | None  # None: the client cannot set timestamps; check they are plausible instead
    headers: bool = True  # False: the client cannot send per-record headers
    fixed_headers: list[tuple[str, bytes]] | None = None  # what a client that sends the same headers on every record sent
    key_fn: object = None
    not_before_ms: int = 0  # for base_ts None: timestamps must fall in [not_before_ms, now + 1 min]


def check(got: list[Got], ex: Expect) -> list[str]:
    """Returns the problems (empty = pass). At most a few of each kind, so the detail stays short."""
    problems: list[str] = []
    key_fn = ex.key_fn or key_of

    def add(msg):
        if len(problems) < 8:
            problems.append(msg)

    if len(got) != ex.n:
        add(f"count {len(got)} != {ex.n}")
    seen: dict[int, Got] = {}
    key_part: dict[str, int] = {}
    split_keys: set[str] = set()
    now_ms = int(time.time() * 1000)
    for g in got:
        try:
            i = index_of(g.value)
        except Exception:  # noqa: BLE001
            add(f"unparsable value {g.value[:40]!r} at p{g.partition}@{g.offset}")
            continue
        if i in seen:
            add(f"record {i} twice (p{seen[i].partition}@{seen[i].offset}, p{g.partition}@{g.offset})")
            continue
        seen[i] = g
        if g.value != value_of(i, ex.codec).encode():
            add(f"record {i}: value {g.value[:40]!r}")
        k = key_fn(i)
        if g.key != k.encode():
            add(f"record {i}: key {g.key!r} != {k!r}")
        if g.headers is not None:
            want = headers_of(i, ex.codec) if ex.headers else (ex.fixed_headers or [])
            if list(g.headers) != want:
                add(f"record {i}: headers {g.headers!r} != {want!r}")
        if g.timestamp is not None:
            if ex.base_ts is not None:
                if g.timestamp != ex.base_ts + i:
                    add(f"record {i}: timestamp {g.timestamp} != {ex.base_ts + i}")
            elif not (ex.not_before_ms <= g.timestamp <= now_ms + 60_000):
                add(f"record {i}: timestamp {g.timestamp} outside [{ex.not_before_ms}, now]")
        p = key_part.setdefault(k, g.partition)
        if p != g.partition and k not in split_keys:
            split_keys.add(k)
            add(f"key {k} in partitions {p} and {g.partition}")
    missing = [i for i in range(ex.n) if i not in seen]
    if missing:
        add(f"{len(missing)} records missing (first {missing[:5]})")
    # Produce order per key within its partition.
    by_part: dict[int, list[Got]] = {}
    for g in got:
        by_part.setdefault(g.partition, []).append(g)
    for p, recs in sorted(by_part.items()):
        offs = [r.offset for r in recs]
        if offs != sorted(offs) or len(set(offs)) != len(offs):
            add(f"partition {p}: offsets not strictly increasing as consumed")
        last: dict[bytes, int] = {}
        for r in sorted(recs, key=lambda r: r.offset):
            try:
                i = index_of(r.value)
            except Exception:  # noqa: BLE001
                continue
            if r.key in last and last[r.key] >= i:
                add(f"partition {p}: key {r.key!r} record {i} after {last[r.key]} (offset {r.offset})")
            last[r.key] = i
    return problems


# ---------------------------------------------------------------- output

_failed_required = False


def result(client: str, scenario: str, codec: str, status: str, detail: str = "", records: int = 0,
           secs: float = 0.0, required: bool = True) -> None:
    global _failed_required
    if status == "fail" and required:
        _failed_required = True
    detail = " ".join((detail or "-").split())[:600]
    print(f"RESULT client={client} scenario={scenario} codec={codec} status={status} records={records} "
          f"secs={secs:.1f} detail={detail}", flush=True)


def exit_code() -> int:
    return 1 if _failed_required else 0


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def run_cell(client: str, scenario: str, codec: str, n: int, fn) -> None:
    """Runs fn() -> list of problems (or raises); prints the cell's RESULT line."""
    t0 = time.monotonic()
    try:
        problems = fn()
    except Exception as e:  # noqa: BLE001
        log(traceback.format_exc())
        problems = [f"{type(e).__name__}: {e}"]
    secs = time.monotonic() - t0
    if problems:
        result(client, scenario, codec, "fail", "; ".join(problems), n, secs)
    else:
        result(client, scenario, codec, "pass", "", n, secs)


def run_standard_cells(client: str, topic_prefix: str, create_topic, produce, consume, subscribe_cell) -> int:
    """The scenario loop of a client program whose steps are plain functions:
    create_topic(bootstrap, topic), produce(bootstrap, topic, n, codec, base_ts,
    idempotent), consume(bootstrap, topic, n) -> records, and
    subscribe_cell(bootstrap, codec, n) -> problems. Returns the exit code."""
    a = parse_args()
    for scenario, codec in cells(a.scenarios, a.codecs):
        def cell(scenario=scenario, codec=codec):
            if scenario == SUBSCRIBE:
                return subscribe_cell(a.bootstrap, codec, a.records)
            topic = topic_name(topic_prefix, scenario, codec)
            base_ts = base_timestamp()
            create_topic(a.bootstrap, topic)
            produce(a.bootstrap, topic, a.records, codec, base_ts, scenario == "idempotent")
            return check(consume(a.bootstrap, topic, a.records), Expect(a.records, codec, base_ts))

        run_cell(client, scenario, codec, a.records, cell)
    return exit_code()


def parse_args(default_records: int = 10_000) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True, help="host:port of a weir (127.0.0.1)")
    ap.add_argument("--records", type=int, default=int(os.environ.get("MATRIX_RECORDS", default_records)),
                    help="records per (scenario, codec)")
    ap.add_argument("--codecs", default=",".join(CODECS))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    a = ap.parse_args()
    a.codecs = [c for c in a.codecs.split(",") if c]
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    return a
