"""Matrix scenario for Apache Kafka's Java tools (../shared/kafka-tools, Kafka 3.9 clients).

Each tool run starts a JVM (about a second here), so the scenario is smaller than the others:
  - kafka-console-producer / kafka-console-consumer ("java-console"): per scenario ONE topic
    (kafka-topics.sh --create --partitions 6) holding --records records (default 2,000) for each
    codec, one producer run per codec (`--property parse.key=true --property parse.headers=true
    --producer-property compression.type=X`, enable.idempotence=false, or true for `idempotent`),
    then kafka-get-offsets.sh and one kafka-console-consumer per partition (`--partition N
    --offset earliest --max-messages <end offset>`, assign mode, no group) printing key, headers,
    timestamp, partition and offset. Each codec's records are then checked like the other clients'
    (common.py); the console producer cannot set timestamps, so they must be the produce time.
  - scenario `subscribe` ("java-console", first codec only, plain producer): --records records in
    a fresh topic, then TWO kafka-console-consumer processes in parallel in one fresh group
    (`--group G --from-beginning`, auto commit, exit after --timeout-ms without a record); together
    they must have read every record exactly once (common.py check), and kafka-consumer-groups.sh
    --describe must show CURRENT-OFFSET = LOG-END-OFFSET on all 6 partitions.
  - kafka-producer-perf-test: 10,000 records per codec (unkeyed), checked through the end offsets.
  - kafka-verifiable-producer: 1,000 records (codec none), acked count and end offsets.
  - kafka-verifiable-consumer: joins a group; reported `needs-groups` if it gets no partitions
    assigned within 10 s, `pass` once it consumes everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common as c

TOOLS = Path(os.environ.get("KAFKA_TOOLS", Path(__file__).resolve().parents[3] / "shared" / "kafka-tools")).resolve()
PARALLEL = 2  # JVMs at once (2-core machine)


def tool(name: str) -> str:
    return str(TOOLS / "bin" / f"{name}.sh")


def run(cmd: list[str], input: str | None = None, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                           stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return subprocess.CompletedProcess(cmd, 124, out, f"timed out after {timeout}s")
    if check and p.returncode != 0:
        raise AssertionError(f"{Path(cmd[0]).name} exit {p.returncode}: {p.stderr.strip()[-500:]}")
    return p


def create_topic(b: str, topic: str) -> None:
    run([tool("kafka-topics"), "--bootstrap-server", b, "--create", "--topic", topic,
         "--partitions", str(c.PARTITIONS), "--replication-factor", "1"])


def end_offsets(b: str, topic: str) -> dict[int, int]:
    out = run([tool("kafka-get-offsets"), "--bootstrap-server", b, "--topic", topic]).stdout
    ends = {}
    for line in out.split("\n"):
        if line.startswith(topic + ":"):
            _, p, o = line.rsplit(":", 2)
            ends[int(p)] = int(o)
    return ends


# ---------------------------------------------------------------- console producer / consumer

PRINT_ALL = ["--property", "print.key=true", "--property", "print.headers=true", "--property", "print.timestamp=true",
             "--property", "print.partition=true", "--property", "print.offset=true"]


def parse_console(outs: list[str], codecs: list[str]) -> tuple[dict[str, list[c.Got]], list[str]]:
    """kafka-console-consumer output (PRINT_ALL) -> records by codec (from the value), parse errors."""
    got_by_codec: dict[str, list[c.Got]] = {codec: [] for codec in codecs}
    parse_errors = []
    for out in outs:
        for line in out.split("\n"):
            if not line:
                continue
            try:
                ts, pp, off, hdrs, key, value = line.split("\t", 5)
                headers = [] if hdrs == "NO_HEADERS" else [
                    (h.split(":", 1)[0], h.split(":", 1)[1].encode()) for h in hdrs.split(",")]
                codec = value.split("-")[1]
                got_by_codec.setdefault(codec, []).append(c.Got(
                    int(pp.split(":")[1]), int(off.split(":")[1]), key.encode(), value.encode(), headers,
                    int(ts.split(":")[1])))
            except Exception as e:  # noqa: BLE001
                parse_errors.append(f"unparsable line {line[:80]!r}: {e}")
    return got_by_codec, parse_errors


def console_produce(b: str, topic: str, codec: str, n: int, idem: str) -> str | None:
    """One kafka-console-producer run of the scenario's records; the error text, if any."""
    lines = "".join(f"idx:{i},codec:{codec}\t{c.key_of(i)}\t{c.value_of(i, codec)}\n" for i in range(n))
    p = run([tool("kafka-console-producer"), "--bootstrap-server", b, "--topic", topic,
             "--property", "parse.key=true", "--property", "parse.headers=true",
             "--producer-property", f"compression.type={codec}",
             "--producer-property", f"enable.idempotence={idem}",
             "--producer-property", "acks=all", "--producer-property", "linger.ms=20",
             "--producer-property", "batch.size=65536"], input=lines, check=False)
    if p.returncode != 0 or "ERROR" in p.stderr:
        return f"console-producer exit {p.returncode}: {p.stderr.strip()[-300:]}"
    return None


def committed_by_describe(b: str, group: str, topic: str) -> tuple[dict[int, int | None], dict[int, int]]:
    """kafka-consumer-groups.sh --describe: CURRENT-OFFSET and LOG-END-OFFSET per partition."""
    out = run([tool("kafka-consumer-groups"), "--bootstrap-server", b, "--describe", "--group", group]).stdout
    committed: dict[int, int | None] = {}
    ends: dict[int, int] = {}
    for line in out.split("\n"):
        f = line.split()
        # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
        if len(f) >= 5 and f[0] == group and f[1] == topic:
            committed[int(f[2])] = None if f[3] == "-" else int(f[3])
            ends[int(f[2])] = int(f[4])
    return committed, ends


def console_subscribe(b: str, codec: str, n: int, timeout_ms: int = 6000) -> None:
    client = "java-console"
    t0 = time.monotonic()
    problems: list[str] = []
    try:
        topic = c.topic_name("java", c.SUBSCRIBE, codec)
        group = c.group_name(topic)
        create_topic(b, topic)
        before = int(time.time() * 1000) - 1000
        err = console_produce(b, topic, codec, n, "false")
        if err:
            problems.append(err)

        def consume(k: int) -> tuple[str, str]:
            p = run([tool("kafka-console-consumer"), "--bootstrap-server", b, "--topic", topic, "--group", group,
                     "--from-beginning", "--timeout-ms", str(timeout_ms),
                     "--consumer-property", f"client.id=matrix-sub-{k}", *PRINT_ALL], timeout=60, check=False)
            bad = p.returncode != 0 or ("ERROR" in p.stderr and "TimeoutException" not in p.stderr)
            return p.stdout, (f"consumer {k}: exit {p.returncode}: {p.stderr.strip()[-200:]}" if bad else "")

        with ThreadPoolExecutor(2) as ex:
            outs = list(ex.map(consume, range(2)))
        problems += [e for _, e in outs if e]
        got_by_codec, parse_errors = parse_console([o for o, _ in outs], [codec])
        problems += parse_errors[:2]
        problems += c.check(got_by_codec.get(codec, []), c.Expect(n, codec, None, not_before_ms=before))
        committed, ends = committed_by_describe(b, group, topic)
        problems += c.check_committed(committed, ends)
        if sum(ends.values()) != n:
            problems.append(f"log end offsets add up to {sum(ends.values())}, not {n}")
        c.log(f"java subscribe: records per consumer {[len(o.splitlines()) for o, _ in outs]}")
    except Exception as e:  # noqa: BLE001
        problems.append(f"{type(e).__name__}: {e}")
    c.result(client, c.SUBSCRIBE, codec, "fail" if problems else "pass", "; ".join(problems), n, time.monotonic() - t0)

def console_scenario(b: str, scenario: str, codecs: list[str], n: int) -> None:
    client = "java-console"
    t0 = time.monotonic()
    topic = c.topic_name("java", scenario, "all")
    idem = "true" if scenario == "idempotent" else "false"
    befores: dict[str, int] = {}
    produce_errors: dict[str, str] = {}
    try:
        create_topic(b, topic)
        for codec in codecs:
            befores[codec] = int(time.time() * 1000) - 1000
            err = console_produce(b, topic, codec, n, idem)
            if err:
                produce_errors[codec] = err
        ends = end_offsets(b, topic)

        def consume(part: int) -> tuple[int, str, str]:
            if ends.get(part, 0) == 0:
                return part, "", ""
            p = run([tool("kafka-console-consumer"), "--bootstrap-server", b, "--topic", topic,
                     "--partition", str(part), "--offset", "earliest", "--max-messages", str(ends[part]),
                     "--timeout-ms", "20000", *PRINT_ALL], timeout=60, check=False)
            return part, p.stdout, (p.stderr if p.returncode else "")

        with ThreadPoolExecutor(PARALLEL) as ex:
            outs = list(ex.map(consume, range(c.PARTITIONS)))
        consume_errors = [f"partition {p}: {err.strip()[-200:]}" for p, _, err in outs if err]
        got_by_codec, parse_errors = parse_console([out for _, out, _ in outs], codecs)
        total = sum(ends.values())
    except Exception as e:  # noqa: BLE001
        for codec in codecs:
            c.result(client, scenario, codec, "fail", f"{type(e).__name__}: {e}", n, time.monotonic() - t0)
        return
    secs = (time.monotonic() - t0) / max(1, len(codecs))
    for codec in codecs:
        problems = []
        if codec in produce_errors:
            problems.append(produce_errors[codec])
        problems += consume_errors[:2] + parse_errors[:2]
        if total != n * len(codecs):
            problems.append(f"end offsets add up to {total}, not {n * len(codecs)}")
        problems += c.check(got_by_codec.get(codec, []),
                            c.Expect(n, codec, None, not_before_ms=befores.get(codec, 0)))
        c.result(client, scenario, codec, "fail" if problems else "pass", "; ".join(problems), n, secs)


# ---------------------------------------------------------------- perf test, verifiable producer/consumer

def perf_test(b: str, scenario: str, codecs: list[str], n: int = 10_000) -> None:
    client = "java-producer-perf-test"
    topic = c.topic_name("java-perf", scenario, "all")
    try:
        create_topic(b, topic)
    except Exception as e:  # noqa: BLE001
        for codec in codecs:
            c.result(client, scenario, codec, "fail", str(e), n)
        return
    expected = 0
    for codec in codecs:
        t0 = time.monotonic()
        problems = []
        try:
            p = run([tool("kafka-producer-perf-test"), "--topic", topic, "--num-records", str(n),
                     "--record-size", "100", "--throughput", "-1", "--producer-props", f"bootstrap.servers={b}",
                     f"compression.type={codec}", "acks=all", "linger.ms=20",
                     f"enable.idempotence={'true' if scenario == 'idempotent' else 'false'}"], check=False)
            summary = [line for line in p.stdout.split("\n") if line.startswith(f"{n} records sent")]
            if p.returncode != 0 or not summary:
                problems.append(f"exit {p.returncode}, no '{n} records sent' line: {p.stderr.strip()[-300:]}")
            expected += n
            total = sum(end_offsets(b, topic).values())
            if total != expected:
                problems.append(f"end offsets add up to {total}, not {expected}")
                expected = total
        except Exception as e:  # noqa: BLE001
            problems.append(f"{type(e).__name__}: {e}")
        c.result(client, scenario, codec, "fail" if problems else "pass", "; ".join(problems), n,
                 time.monotonic() - t0)


def verifiable_producer(b: str, scenario: str, n: int = 1000) -> None:
    client = "java-verifiable-producer"
    t0 = time.monotonic()
    problems = []
    try:
        topic = c.topic_name("java-vp", scenario, "none")
        create_topic(b, topic)
        with tempfile.NamedTemporaryFile("w", suffix=".properties", delete=False) as f:
            # The tool sets retries=0, which an idempotent producer refuses.
            idem = "enable.idempotence=true\nretries=5\n" if scenario == "idempotent" else "enable.idempotence=false\n"
            f.write(idem + "linger.ms=5\n")
        try:
            p = run([tool("kafka-verifiable-producer"), "--bootstrap-server", b, "--topic", topic,
                     "--max-messages", str(n), "--acks", "-1", "--repeating-keys", "100",
                     "--producer.config", f.name], check=False)
        finally:
            os.unlink(f.name)
        events = [json.loads(line) for line in p.stdout.split("\n") if line.startswith("{")]
        data = [e for e in events if e.get("name") == "tool_data"]
        errors = [e for e in events if e.get("name") == "producer_send_error"]
        if p.returncode != 0 or not data or data[-1].get("acked") != n or errors:
            problems.append(f"exit {p.returncode}, tool_data {data[-1:]}, {len(errors)} send errors {errors[:2]}, "
                            f"stderr: {p.stderr.strip()[-300:]}")
        total = sum(end_offsets(b, topic).values())
        if total != n:
            problems.append(f"end offsets add up to {total}, not {n}")
    except Exception as e:  # noqa: BLE001
        problems.append(f"{type(e).__name__}: {e}")
    c.result(client, scenario, "none", "fail" if problems else "pass", "; ".join(problems), n, time.monotonic() - t0)


def verifiable_consumer(b: str, n: int = 200, wait_s: float = 10.0) -> None:
    """Needs a group coordinator: `needs-groups` while it gets no assignment within wait_s."""
    client = "java-verifiable-consumer"
    t0 = time.monotonic()
    topic = c.topic_name("java-vc", "consume", "none")
    try:
        create_topic(b, topic)
        run([tool("kafka-console-producer"), "--bootstrap-server", b, "--topic", topic],
            input="".join(f"value-{i}\n" for i in range(n)))
        p = run([tool("kafka-verifiable-consumer"), "--bootstrap-server", b, "--topic", topic,
                 "--group-id", f"matrix-{topic}", "--max-messages", str(n), "--reset-policy", "earliest"],
                timeout=wait_s, check=False)
        events = [json.loads(line) for line in p.stdout.split("\n") if line.startswith("{")]
        names = {e.get("name") for e in events}
        consumed = sum(e.get("count", 0) for e in events if e.get("name") == "records_consumed")
        if consumed == n:
            c.result(client, "produce-consume", "none", "pass", "", n, time.monotonic() - t0)
        elif "partitions_assigned" not in names:
            c.result(client, "produce-consume", "none", "needs-groups",
                     f"no partitions assigned within {wait_s:.0f}s (group coordinator)", n,
                     time.monotonic() - t0, required=False)
        else:
            c.result(client, "produce-consume", "none", "fail", f"consumed {consumed} of {n}; events {sorted(names)}",
                     n, time.monotonic() - t0)
    except Exception as e:  # noqa: BLE001
        c.result(client, "produce-consume", "none", "fail", f"{type(e).__name__}: {e}", n, time.monotonic() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--records", type=int, default=int(os.environ.get("MATRIX_JAVA_RECORDS", 2000)),
                    help="console producer records per (scenario, codec)")
    ap.add_argument("--codecs", default=",".join(c.CODECS))
    ap.add_argument("--scenarios", default=",".join(c.SCENARIOS))
    ap.add_argument("--tools", default="console,perf,verifiable-producer,verifiable-consumer")
    a = ap.parse_args()
    if shutil.which("java") is None or not (TOOLS / "bin").is_dir():
        c.log(f"java or {TOOLS}/bin missing")
        return 2
    codecs = [x for x in a.codecs.split(",") if x]
    tools = a.tools.split(",")
    for scenario in [s for s in a.scenarios.split(",") if s]:
        if scenario == c.SUBSCRIBE:
            if "console" in tools:
                console_subscribe(a.bootstrap, codecs[0], a.records)
            continue
        if "console" in tools:
            console_scenario(a.bootstrap, scenario, codecs, a.records)
        if "perf" in tools:
            perf_test(a.bootstrap, scenario, codecs)
        if "verifiable-producer" in tools:
            verifiable_producer(a.bootstrap, scenario)
    if "verifiable-consumer" in tools:
        verifiable_consumer(a.bootstrap)
    return c.exit_code()


if __name__ == "__main__":
    sys.exit(main())
