"""Matrix scenario for kcat (Debian's kcat, librdkafka inside): the topic comes from Metadata
auto-creation (kcat has no admin commands; the broker must run with num.partitions=6), then
`kcat -P -K: -z <codec> -H ...` (keyed; the same -H headers on every record: kcat cannot set
per-record headers or timestamps, so timestamps are checked to be the produce time), then
`kcat -C -e` over all partitions from the beginning (assign mode, no group).
The idempotent scenario adds `-X enable.idempotence=true`. See common.py for the checks."""

from __future__ import annotations

import json
import subprocess
import time

import common as c

CLIENT = "kcat"
FMT = "%p\\t%o\\t%k\\t%h\\t%T\\t%s\\n"


def kcat(bootstrap: str, *args, input: str | None = None, timeout: float = 60) -> str:
    cmd = ["kcat", "-b", bootstrap, "-X", "broker.address.family=v4", *args]
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if p.returncode != 0:
        raise AssertionError(f"kcat {' '.join(args[:6])}... exit {p.returncode}: {p.stderr.strip()[-400:]}")
    return p.stdout


def partitions(bootstrap: str, topic: str) -> int:
    md = json.loads(kcat(bootstrap, "-L", "-J", "-t", topic))
    for t in md.get("topics", []):
        if t.get("topic") == topic and not t.get("error"):
            return len(t.get("partitions", []))
    return 0


def cell(bootstrap: str, scenario: str, codec: str, n: int) -> list[str]:
    topic = c.topic_name("kcat", scenario, codec)
    fixed = [("codec", codec.encode()), ("src", b"kcat")]
    stdin = "".join(f"{c.key_of(i)}:{c.value_of(i, codec)}\n" for i in range(n))
    before = int(time.time() * 1000) - 1000
    kcat(bootstrap, "-P", "-t", topic, "-K:", "-z", codec, "-H", "codec=" + codec, "-H", "src=kcat",
         "-X", "linger.ms=20", "-X", "acks=all",
         "-X", f"enable.idempotence={'true' if scenario == 'idempotent' else 'false'}", input=stdin)
    parts = partitions(bootstrap, topic)
    if parts != c.PARTITIONS:
        return [f"auto-created topic has {parts} partitions, not {c.PARTITIONS} (broker needs num.partitions=6)"]
    got: list[c.Got] = []
    deadline = time.monotonic() + 30
    while True:
        out = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", FMT)
        got = []
        for line in out.split("\n"):
            if not line:
                continue
            p, o, k, h, ts, v = line.split("\t")
            hdrs = [tuple(kv.split("=", 1)) for kv in h.split(",")] if h else []
            got.append(c.Got(int(p), int(o), k.encode(), v.encode(),
                             [(hk, hv.encode()) for hk, hv in hdrs], int(ts)))
        if len(got) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # kcat prints partitions interleaved; restore per-partition consume order for the check.
    got.sort(key=lambda g: (g.partition, g.offset))
    return c.check(got, c.Expect(n, codec, None, headers=False, fixed_headers=fixed, not_before_ms=before))


def main() -> int:
    a = c.parse_args()
    for scenario in a.scenarios:
        for codec in a.codecs:
            c.run_cell(CLIENT, scenario, codec, a.records, lambda: cell(a.bootstrap, scenario, codec, a.records))
    return c.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
