"""Runs the client matrix: each client's scenario program (this folder) against one weir.

    .venv/bin/python compat-tests/matrix/run.py                     # starts its own weir
    .venv/bin/python compat-tests/matrix/run.py --bootstrap 127.0.0.1:9092 --clients kcat,sarama
    .venv/bin/python compat-tests/matrix/run.py --out /tmp/r.txt && \\
        .venv/bin/python compat-tests/matrix/table.py /tmp/r.txt    # the README table

The weir it starts (lib/weir.py: 127.0.0.1, free port, temp dir, stopped by PID) runs with
num.partitions=6, because kcat has no admin API and gets its topics from Metadata
auto-creation, and group.initial.rebalance.delay.ms=200 (Kafka's 3,000 would add 3 s to every
join of an empty group in the `subscribe` scenario, twice per client). Every program runs in its own process group with a time bound (below pytest's
180 s per test, including the sarama build); on timeout that group (and only it) is killed. test_matrix.py uses the same CLIENTS table.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPAT = HERE.parent
REPO = COMPAT.parent
BUILD = COMPAT / ".build"
SARAMA_SRC = Path("/usr/share/gocode/src/github.com/Shopify/sarama")
KAFKA_TOOLS = Path(os.environ.get("KAFKA_TOOLS", REPO.parent / "shared" / "kafka-tools")).resolve()

BROKER_OVERRIDES = {"num.partitions": 6, "group.initial.rebalance.delay.ms": 200}

RESULT_RE = re.compile(
    r"^RESULT client=(?P<client>\S+) scenario=(?P<scenario>\S+) codec=(?P<codec>\S+) status=(?P<status>\S+)"
    r" records=(?P<records>\d+) secs=(?P<secs>[\d.]+) detail=(?P<detail>.*)$")


def python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@dataclass
class Client:
    name: str
    timeout: float
    # (bootstrap) -> argv
    argv: object
    # () -> None when runnable, else the reason to skip
    missing: object
    # () -> None; e.g. compiling the Go program
    prepare: object = None
    # (client, scenario, codec) -> the non-pass statuses accepted for that cell, with the reason
    expected: dict = field(default_factory=dict)
    # the cells every run must report: (client, scenario, codec); a program may report for
    # several matrix rows (java_tools.py: console, perf test, verifiable producer/consumer)
    cells: list = field(default_factory=list)


CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
SCENARIOS = ["produce-consume", "idempotent", "subscribe"]
SUBSCRIBE = "subscribe"  # group consumer; one cell, the first codec (common.py)


def all_cells(row: str, subscribe: bool = True) -> list[tuple[str, str, str]]:
    return ([(row, s, c) for s in SCENARIOS if s != SUBSCRIBE for c in CODECS]
            + ([(row, SUBSCRIBE, CODECS[0])] if subscribe else []))


def _py_missing(module: str):
    def check():
        if importlib.util.find_spec(module) is None and subprocess.run(
                [python(), "-c", f"import {module}"], capture_output=True).returncode != 0:
            return f"python module {module} not installed (scripts/install-test-deps.sh)"
        return None
    return check


def _which_missing(*tools: str, extra: list[Path] = ()):
    def check():
        for t in tools:
            if shutil.which(t) is None:
                return f"{t} not installed (scripts/install-test-deps.sh)"
        for p in extra:
            if not p.exists():
                return f"{p} missing (scripts/install-test-deps.sh)"
        return None
    return check


def _build_sarama() -> None:
    p = subprocess.run(["bash", str(HERE / "sarama" / "build.sh")], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"sarama build failed:\n{p.stdout}\n{p.stderr}")


CLIENTS: dict[str, Client] = {c.name: c for c in [
    Client("confluent-kafka", 120, lambda b: [python(), str(HERE / "py_confluent.py"), "--bootstrap", b],
           _py_missing("confluent_kafka"), cells=all_cells("confluent-kafka")),
    Client("kafka-python", 120, lambda b: [python(), str(HERE / "py_kafka_python.py"), "--bootstrap", b],
           _py_missing("kafka"), cells=all_cells("kafka-python")),
    Client("aiokafka", 120, lambda b: [python(), str(HERE / "py_aiokafka.py"), "--bootstrap", b],
           _py_missing("aiokafka"), cells=all_cells("aiokafka")),
    Client("kafkajs", 150, lambda b: ["node", str(HERE / "kafkajs.js"), "--bootstrap", b],
           _which_missing("node", extra=[COMPAT / "node_modules" / "kafkajs"]), cells=all_cells("kafkajs"),
           expected={("kafkajs", s, c): ("unsupported", "no pure-JS KafkaJS codec")
                     for s in SCENARIOS if s != SUBSCRIBE for c in ("lz4", "zstd")}),
    Client("sarama", 150, lambda b: [str(BUILD / "sarama-matrix"), "--bootstrap", b],
           _which_missing("go", "gcc", extra=[SARAMA_SRC]), prepare=_build_sarama, cells=all_cells("sarama"),
           expected={("sarama", s, "zstd"): ("unsupported", "sarama 1.22 sends zstd in Produce v3, "
                                             "which Kafka refuses (UNSUPPORTED_COMPRESSION_TYPE)")
                     for s in SCENARIOS if s != SUBSCRIBE}),
    Client("kcat", 120, lambda b: [python(), str(HERE / "kcat_cli.py"), "--bootstrap", b],
           _which_missing("kcat"), cells=all_cells("kcat")),
    Client("java", 165, lambda b: [python(), str(HERE / "java_tools.py"), "--bootstrap", b],
           _which_missing("java", extra=[KAFKA_TOOLS / "bin"]),
           cells=all_cells("java-console") + all_cells("java-producer-perf-test", subscribe=False)
           + [("java-verifiable-producer", s, "none") for s in SCENARIOS if s != SUBSCRIBE]
           + [("java-verifiable-consumer", "produce-consume", "none")]),
]}


@dataclass
class Result:
    client: str
    scenario: str
    codec: str
    status: str
    records: int
    secs: float
    detail: str

    @property
    def line(self) -> str:
        return (f"RESULT client={self.client} scenario={self.scenario} codec={self.codec} status={self.status} "
                f"records={self.records} secs={self.secs:.1f} detail={self.detail}")


def parse_results(text: str) -> list[Result]:
    out = []
    for line in text.splitlines():
        m = RESULT_RE.match(line.strip())
        if m:
            out.append(Result(m["client"], m["scenario"], m["codec"], m["status"], int(m["records"]),
                              float(m["secs"]), m["detail"]))
    return out


@dataclass
class Run:
    client: str
    returncode: int | None  # None = timed out (killed)
    results: list[Result]
    stdout: str
    stderr: str
    secs: float


def run_client(client: Client, bootstrap: str, timeout: float | None = None) -> Run:
    """Runs one client's program against `bootstrap` in its own process group, bounded in time."""
    if client.prepare:
        client.prepare()
    t0 = time.monotonic()
    env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(client.argv(bootstrap), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, cwd=str(HERE), env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout or client.timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        # Only the group this call created (its leader's pid): the program and its children.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        rc = None
    return Run(client.name, rc, parse_results(out), out, err, time.monotonic() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="an already running weir (127.0.0.1:PORT) with num.partitions=6")
    ap.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated, from: " + ",".join(CLIENTS))
    ap.add_argument("--out", help="also write the RESULT lines to this file")
    a = ap.parse_args()

    weir = None
    if a.bootstrap:
        bootstrap = a.bootstrap
    else:
        sys.path.insert(0, str(COMPAT))
        from lib.weir import Weir

        weir = Weir(BROKER_OVERRIDES, name="weir-matrix")
        weir.start()
        bootstrap = weir.bootstrap
    lines: list[str] = []
    bad = False
    try:
        for name in a.clients.split(","):
            client = CLIENTS[name]
            why = client.missing()
            if why:
                print(f"# {name}: skipped: {why}", flush=True)
                continue
            r = run_client(client, bootstrap)
            for res in r.results:
                print(res.line, flush=True)
                lines.append(res.line)
            print(f"# {name}: exit {r.returncode} in {r.secs:.0f}s", flush=True)
            if r.returncode != 0:
                bad = True
                sys.stderr.write(f"--- {name} stderr (tail) ---\n{r.stderr[-3000:]}\n")
    finally:
        if weir is not None:
            weir.cleanup()
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
