"""Matrix scenario for kcat (Debian's kcat, librdkafka inside): the topic comes from Metadata
auto-creation (kcat has no admin commands; the broker must run with num.partitions=6), then
`kcat -P -K: -z <codec> -H ...` (keyed; the same -H headers on every record: kcat cannot set
per-record headers or timestamps, so timestamps are checked to be the produce time), then
`kcat -C -e` over all partitions from the beginning (assign mode, no group).
The idempotent scenario adds `-X enable.idempotence=true`. Scenario `subscribe` (first codec,
plain producer): `kcat -G <fresh group> -X auto.offset.reset=earliest -e <topic>` (balanced
consumer, librdkafka's auto commit and the final commit at close) reads everything; a second
`kcat -G` of the group must be assigned all 6 partitions and reach their end (its "Reached end
of topic ... at offset N" lines = the committed offsets) without a record. See common.py for the checks."""

from __future__ import annotations

import json
import re
import subprocess
import time

import common as c

CLIENT = "kcat"
FMT = "%p\\t%o\\t%k\\t%h\\t%T\\t%s\\n"


def kcat(bootstrap: str, *args, input: str | None = None, timeout: float = 60, stderr: list | None = None) -> str:
    cmd = ["kcat", "-b", bootstrap, "-X", "broker.address.family=v4", *args]
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if p.returncode != 0:
        raise AssertionError(f"kcat {' '.join(args[:6])}... exit {p.returncode}: {p.stderr.strip()[-400:]}")
    if stderr is not None:
        stderr.append(p.stderr)
    return p.stdout


def partitions(bootstrap: str, topic: str) -> int:
    md = json.loads(kcat(bootstrap, "-L", "-J", "-t", topic))
    for t in md.get("topics", []):
        if t.get("topic") == topic and not t.get("error"):
            return len(t.get("partitions", []))
    return 0


def parse(out: str) -> list[c.Got]:
    got = []
    for line in out.split("\n"):
        if not line:
            continue
        p, o, k, h, ts, v = line.split("\t")
        hdrs = [tuple(kv.split("=", 1)) for kv in h.split(",")] if h else []
        got.append(c.Got(int(p), int(o), k.encode(), v.encode(), [(hk, hv.encode()) for hk, hv in hdrs], int(ts)))
    return got


EOF_RE = re.compile(r"Reached end of topic (\S+) \[(\d+)\] at offset (\d+)")
ASSIGNED_RE = re.compile(r"rebalanced \(memberid [^)]*\): assigned: (.*)")


def balanced(bootstrap: str, topic: str, group: str) -> tuple[list[c.Got], set[int], dict[int, int]]:
    """One `kcat -G` run to the end of its partitions: records, partitions assigned, EOF offsets."""
    err: list[str] = []
    out = kcat(bootstrap, "-G", group, topic, "-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=10000",
               "-e", "-f", FMT, timeout=60, stderr=err)
    assigned = {int(p) for m in ASSIGNED_RE.finditer(err[0]) for p in re.findall(r"\[(\d+)\]", m.group(1))}
    eofs = {int(m.group(2)): int(m.group(3)) for m in EOF_RE.finditer(err[0]) if m.group(1) == topic}
    got = parse(out)
    got.sort(key=lambda g: (g.partition, g.offset))
    return got, assigned, eofs


def produce(bootstrap: str, topic: str, scenario: str, codec: str, n: int) -> list[str]:
    stdin = "".join(f"{c.key_of(i)}:{c.value_of(i, codec)}\n" for i in range(n))
    kcat(bootstrap, "-P", "-t", topic, "-K:", "-z", codec, "-H", "codec=" + codec, "-H", "src=kcat",
         "-X", "linger.ms=20", "-X", "acks=all",
         "-X", f"enable.idempotence={'true' if scenario == 'idempotent' else 'false'}", input=stdin)
    parts = partitions(bootstrap, topic)
    if parts != c.PARTITIONS:
        return [f"auto-created topic has {parts} partitions, not {c.PARTITIONS} (broker needs num.partitions=6)"]
    return []


def subscribe_cell(bootstrap: str, codec: str, n: int) -> list[str]:
    topic = c.topic_name("kcat", c.SUBSCRIBE, codec)
    group = c.group_name(topic)
    fixed = [("codec", codec.encode()), ("src", b"kcat")]
    before = int(time.time() * 1000) - 1000
    problems = produce(bootstrap, topic, c.SUBSCRIBE, codec, n)
    if problems:
        return problems
    got, assigned, ends = balanced(bootstrap, topic, group)
    all_parts = set(range(c.PARTITIONS))
    if assigned != all_parts or set(ends) != all_parts:
        problems.append(f"first kcat -G: assigned {sorted(assigned)}, end reached on {sorted(ends)}")
    problems += c.check(got, c.Expect(n, codec, None, headers=False, fixed_headers=fixed, not_before_ms=before))
    if sum(ends.values()) != n:
        problems.append(f"end offsets {ends} add up to {sum(ends.values())}, not {n}")
    again, assigned2, eofs2 = balanced(bootstrap, topic, group)
    if assigned2 != all_parts:
        problems.append(f"second kcat -G: assigned {sorted(assigned2)}")
    problems += c.check_committed(eofs2, ends, "second kcat -G started at")
    if again:
        problems.append(f"second kcat -G of the group read {len(again)} records (first "
                        f"p{again[0].partition}@{again[0].offset})")
    return problems


def cell(bootstrap: str, scenario: str, codec: str, n: int) -> list[str]:
    if scenario == c.SUBSCRIBE:
        return subscribe_cell(bootstrap, codec, n)
    topic = c.topic_name("kcat", scenario, codec)
    fixed = [("codec", codec.encode()), ("src", b"kcat")]
    before = int(time.time() * 1000) - 1000
    problems = produce(bootstrap, topic, scenario, codec, n)
    if problems:
        return problems
    got: list[c.Got] = []
    deadline = time.monotonic() + 30
    while True:
        got = parse(kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", FMT))
        if len(got) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # kcat prints partitions interleaved; restore per-partition consume order for the check.
    got.sort(key=lambda g: (g.partition, g.offset))
    return c.check(got, c.Expect(n, codec, None, headers=False, fixed_headers=fixed, not_before_ms=before))


def main() -> int:
    a = c.parse_args()
    for scenario, codec in c.cells(a.scenarios, a.codecs):
        c.run_cell(CLIENT, scenario, codec, a.records, lambda: cell(a.bootstrap, scenario, codec, a.records))
    return c.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
