#!/usr/bin/env python3
"""Runs librdkafka 2.8.0's own test suite (tests/test-runner) against Weir.

    run.py ratchet   the tests in expected-pass.txt, in the suite's quick mode (-Q);
                     exits 1 if any of them does not pass        (make librdkafka-ratchet)
    run.py compat    every entry of the suite's test table; writes compat-tests/RESULTS.md,
                     lists tests that pass but are not in expected-pass.txt; exits 1 if a
                     listed test or a local (mock-cluster) test fails          (make compat)
    run.py report    RESULTS.md again from the last compat run's outcomes (after editing the lists)
    run.py list      the classification of all entries, without running anything
    run.py run NAME.. the named entries (or test numbers), full mode, and print the outcome

The suite is fetched and built by setup.sh (cached in .build/). Tests flagged
TEST_F_LOCAL run against librdkafka's built-in mock cluster, without Weir. Every other
test gets a fresh weir (lib/weir.py: free port on 127.0.0.1, temp data dir, stopped by
PID), or for the tests in CLUSTER_TESTS a fresh 3-node cluster (lib/cluster.py), and a
test.conf pointing at it. Entries listed in not-applicable.txt are not run
(LRK_RUN_SKIPPED=1 runs them anyway) and carry their reason into RESULTS.md.

Environment knobs:
    LRK_JOBS=2            test-runner processes in parallel (each with its own weir)
    LRK_TIMEOUT=300       seconds per test-runner process (SIGKILL after `timeout`)
    LRK_KAFKA_VERSION     broker version given to the suite (TEST_KAFKA_VERSION), 3.9.0
    LRK_WEIR_LOG=info     RUST_LOG for the weirs (debug logs every request)
    LRK_DEBUG=...         TEST_DEBUG for librdkafka (e.g. broker,protocol,msg)
    LRK_GROUP_PROTOCOL=consumer
                          TEST_CONSUMER_GROUP_PROTOCOL: the suite's consumers use KIP-848;
                          `ratchet` then runs expected-pass-consumer.txt
    LRK_RUN_SKIPPED=1     also run the entries of not-applicable.txt
    LRK_RESULTS=path      where `compat` writes the report (compat-tests/RESULTS.md)
Per-run logs (test-runner output, weir stderr) go to .build/logs/<mode>/.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPAT = HERE.parent
sys.path.insert(0, str(COMPAT))

from lib.cluster import WeirCluster  # noqa: E402
from lib.weir import REGISTRY, Weir, WeirError  # noqa: E402

BUILD = HERE / ".build"
GROUP_PROTOCOL = os.environ.get("LRK_GROUP_PROTOCOL", "")
# The KIP-848 run has its own list: the suite's group tests that apply to that protocol.
EXPECTED = HERE / (f"expected-pass-{GROUP_PROTOCOL}.txt" if GROUP_PROTOCOL else "expected-pass.txt")
NOT_APPLICABLE = HERE / "not-applicable.txt"
# Apache Kafka's Java tools (shared/ beside the repo): the suite runs their kafka-topics.sh
# (KAFKA_PATH, BROKERS) for topic configs its Admin API helpers do not set.
KAFKA_TOOLS = Path(os.environ.get("LRK_KAFKA_PATH", str(COMPAT.parent.parent / "shared" / "kafka-tools")))
RESULTS = Path(os.environ.get("LRK_RESULTS", str(COMPAT / "RESULTS.md")))
JOBS = int(os.environ.get("LRK_JOBS", "2"))
# Per test-runner process; the full mode of a few tests (0113, 0105 on the mock cluster)
# runs for several minutes. A group of N entries gets N times this.
TIMEOUT_S = float(os.environ.get("LRK_TIMEOUT", "600"))
KAFKA_VERSION = os.environ.get("LRK_KAFKA_VERSION", "3.9.0")
WEIR_LOG = os.environ.get("LRK_WEIR_LOG", "info")
RUN_SKIPPED = os.environ.get("LRK_RUN_SKIPPED") == "1"
if os.environ.get("LRK_WEIR_LOG"):
    os.environ["RUST_LOG"] = WEIR_LOG  # lib/weir.py passes it on to the brokers
# The suite's own timeouts (test_timeout_set, tmout_multip) are scaled by this; CI=true would
# add 2 to it inside the test-runner, so CI is not passed on and both runs behave the same.
TIMEOUT_MULTIPLIER = os.environ.get("LRK_TIMEOUT_MULTIPLIER", "2")

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b\(B")
SUMMARY_ROW = re.compile(r"^\|\s*(\S+)\s+\|\s*(PASSED|FAILED|SKIPPED|RUNNING|DNS)\s*\|\s*([0-9.]+)s\s*\|\s?(.*)$")


def log(msg: str) -> None:
    print(f"librdkafka: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the suite


def setup() -> Path:
    """Fetches and builds the suite (cached); returns the source tree."""
    out = subprocess.run([str(HERE / "setup.sh")], stdout=subprocess.PIPE, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"librdkafka: setup.sh failed ({out.returncode})")
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class Entry:
    name: str
    flags: str
    minver: str = ""
    local: bool = False
    scenario: str = "default"  # tests/scenarios/<name>.json: the broker config the test needs
    skip_reason: str = ""  # from not-applicable.txt

    @property
    def number(self) -> str:
        return self.name.split("_", 1)[0]


def parse_table(src: Path) -> list[Entry]:
    """The `struct test tests[]` table of tests/test.c: every entry with its flags."""
    text = (src / "tests" / "test.c").read_text()
    start = text.index("struct test tests[] = {")
    body = text[start : text.index("\n};", start)]
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    entries = []
    for chunk in body.split("_TEST(")[1:]:
        m = re.match(r"\s*(\w+)\s*,\s*([^,)]+)", chunk)
        name, flags = m.group(1), m.group(2).strip()
        ver = re.search(r"TEST_BRKVER\((\d+),\s*(\d+),\s*(\d+),\s*(\d+)\)", chunk)
        scen = re.search(r'\.scenario\s*=\s*"([^",]+)', chunk)
        entries.append(Entry(name, flags, ".".join(ver.groups()) if ver else "", "TEST_F_LOCAL" in flags,
                             scen.group(1) if scen else "default"))
    return entries


def read_not_applicable() -> dict[str, str]:
    out = {}
    for line in NOT_APPLICABLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition(" ")
        out[name] = reason.strip()
    return out


def read_expected() -> list[str]:
    if not EXPECTED.exists():
        return []
    return [l.split("#", 1)[0].strip() for l in EXPECTED.read_text().splitlines() if l.split("#", 1)[0].strip()]


def load_entries(src: Path) -> list[Entry]:
    entries = parse_table(src)
    na = read_not_applicable()
    known = {e.name for e in entries}
    for name in na:
        if name not in known:
            raise SystemExit(f"librdkafka: not-applicable.txt names {name}, which is not in the suite")
    for e in entries:
        e.skip_reason = na.get(e.name, "")
    return entries


# ----------------------------------------------------------------------------- running


@dataclass
class Outcome:
    name: str
    state: str  # PASSED FAILED SKIPPED TIMEOUT CRASHED NOT-RUN
    detail: str = ""
    duration: float = 0.0
    log: str = ""


@dataclass
class Group:
    """Entries that one test-runner process runs: same test number, same locality."""

    number: str
    local: bool
    scenario: str
    entries: list[Entry] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.number}{'-local' if self.local else ''}{'' if self.scenario == 'default' else '-' + self.scenario}"


def make_groups(entries: list[Entry]) -> list[Group]:
    groups: dict[tuple[str, bool, str], Group] = {}
    for e in entries:
        k = (e.number, e.local, e.scenario)
        groups.setdefault(k, Group(*k)).entries.append(e)
    return list(groups.values())


# Tests whose full mode runs longer than LRK_TIMEOUT (0113: about 10 minutes): a multiple.
LONG_TESTS = {"0113": 2.5}


# The suite's scenarios (tests/scenarios/*.json) as weir overrides: the brokers of every
# scenario have num.partitions=4 (auto-created topics get 4 partitions); `noautocreate`
# turns topic auto-creation off.
SCENARIOS = {
    "default": {"num.partitions": 4, "auto.create.topics.enable": True},
    "noautocreate": {"num.partitions": 4, "auto.create.topics.enable": False},
}

# Tests that need several brokers run against a 3-node cluster (lib/cluster.py) instead of
# one weir, set up as the suite's trivup cluster is: replication factor 3 by default, and
# broker N in rack RACK<N> with Kafka's rack-aware replica selector (0101 reads broker.rack
# through DescribeConfigs and gives its consumer the rack of a follower).
CLUSTER_TESTS = {"0101", "0107", "0111"}
CLUSTER_OVERRIDES = {
    "default.replication.factor": 3,
    "replica.selector.class": "org.apache.kafka.common.replica.RackAwareReplicaSelector",
}


def start_cluster(group: "Group") -> WeirCluster:
    cluster = WeirCluster(3, overrides={**SCENARIOS[group.scenario], **CLUSTER_OVERRIDES}, name=f"lrk-{group.key}")
    for node_id, node in cluster.nodes.items():
        node.overrides["broker.rack"] = f"RACK{node_id}"
    try:
        cluster.start()
    except BaseException:
        cluster.cleanup()
        raise
    return cluster


_print_lock = threading.Lock()


def run_group(src: Path, group: Group, quick: bool, logdir: Path) -> list[Outcome]:
    tests_dir = src / "tests"
    logdir.mkdir(parents=True, exist_ok=True)
    out_path = logdir / f"{group.key}.log"
    weir = None
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WEIR_", "TEST", "RDKAFKA_", "KAFKA_", "ZK_")) and k != "CI"}
    env.update(
        LD_LIBRARY_PATH=f"{src / 'src'}:{src / 'src-cpp'}",
        TESTS=group.number,
        TEST_KAFKA_VERSION=KAFKA_VERSION,
        TEST_SCENARIO=group.scenario,
        TEST_LEVEL=os.environ.get("LRK_TEST_LEVEL", "2"),
        RDKAFKA_GITVER="2.8.0-debian",
    )
    if os.environ.get("LRK_DEBUG"):
        env["TEST_DEBUG"] = os.environ["LRK_DEBUG"]
    if GROUP_PROTOCOL:
        env["TEST_CONSUMER_GROUP_PROTOCOL"] = GROUP_PROTOCOL
    args = [str(tests_dir / "test-runner"), "-p1"]
    args.append("-l" if group.local else "-L")
    if any("TEST_F_KNOWN_ISSUE" in e.flags.replace("TEST_F_KNOWN_ISSUE_", "") for e in group.entries):
        args.append("-k")
    if quick:
        args.append("-Q")
    limit = TIMEOUT_S * len(group.entries) / (2 if quick else 1)
    limit *= LONG_TESTS.get(group.number, 1)
    t0 = time.monotonic()
    conf_dir = Path(BUILD / "conf")
    conf_dir.mkdir(parents=True, exist_ok=True)
    conf = conf_dir / f"{group.key}.{os.getpid()}.conf"
    cluster = None
    bootstrap = ""
    try:
        if group.local:
            # The mock-cluster tests take their brokers from the suite itself; an empty
            # test.conf keeps them from reading a stray tests/test.conf.
            conf.write_text(f"test.timeout.multiplier={TIMEOUT_MULTIPLIER}\n")
        else:
            try:
                if group.number in CLUSTER_TESTS:
                    cluster = start_cluster(group)
                    bootstrap = cluster.bootstrap()
                else:
                    weir = Weir(SCENARIOS[group.scenario], name=f"lrk-{group.key}")
                    weir.start()
                    bootstrap = weir.bootstrap
            except WeirError as exc:
                detail = squash(f"weir did not start: {exc}")
                return [Outcome(e.name, "CRASHED", detail, 0.0, str(out_path.relative_to(HERE))) for e in group.entries]
            conf.write_text(
                f"bootstrap.servers={bootstrap}\n"
                # As tests/README describes for an existing cluster: ask the broker for its
                # versions, and fall back to the version the suite is told it runs against.
                "api.version.request=true\n"
                f"broker.version.fallback={KAFKA_VERSION}\n"
                f"test.timeout.multiplier={TIMEOUT_MULTIPLIER}\n"
            )
        env["RDKAFKA_TEST_CONF"] = str(conf)
        if bootstrap and (KAFKA_TOOLS / "bin" / "kafka-topics.sh").exists() and shutil.which("java"):
            env["KAFKA_PATH"] = str(KAFKA_TOOLS)
            env["BROKERS"] = bootstrap
        with open(out_path, "wb") as out:
            out.write(f"# {' '.join(args)}  TESTS={group.number} cwd={tests_dir}\n".encode())
            out.flush()
            proc = subprocess.run(
                # stdbuf: the test-runner abort()s after its summary when a test failed,
                # which would lose a fully buffered stdout.
                ["timeout", "-k", "10", str(int(limit)), "stdbuf", "-oL", "-eL", *args],
                cwd=str(tests_dir), env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        rc = proc.returncode
    finally:
        conf.unlink(missing_ok=True)
        if weir is not None:
            weir.stop()
            shutil.copy(weir.log_path, logdir / f"{group.key}.weir.log")
            weir.cleanup()
        if cluster is not None:
            for node_id, node in cluster.nodes.items():
                node.stop()
                shutil.copy(node.log_path, logdir / f"{group.key}.node{node_id}.weir.log")
            cluster.cleanup()
    dur = time.monotonic() - t0
    text = ANSI.sub("", out_path.read_text(errors="replace"))
    rows = {}
    for line in text.splitlines():
        m = SUMMARY_ROW.match(line.strip())
        if m:
            rows[m.group(1)] = (m.group(2), float(m.group(3)), m.group(4).strip())
    # Fallbacks when there is no summary row (killed by the timeout, crashed).
    failed_at = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'### Test "(\w+)[^"]*" failed at (.*?): ###', line.strip())
        if m and m.group(1) not in failed_at:
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            failed_at[m.group(1)] = f"{nxt} (at {m.group(2).rsplit(' at ', 1)[0]})"
        m = re.search(r"================= Test (\w+) PASSED =================", line)
        if m:
            failed_at.setdefault(m.group(1), "")
    outcomes = []
    for e in group.entries:
        if e.name in rows:
            state, d, detail = rows[e.name]
            if state in ("RUNNING", "DNS"):
                state, detail = "FAILED", f"{state.lower()} at exit: {detail}".strip()
            if state == "FAILED" and failed_at.get(e.name):
                detail = failed_at[e.name]
        elif failed_at.get(e.name):
            state, d, detail = "FAILED", dur, failed_at[e.name]
        elif rc in (124, 137):
            state, d, detail = "TIMEOUT", dur, f"test-runner killed after {int(limit)}s"
        else:
            state, d, detail = "CRASHED", dur, f"test-runner exited {rc} without a summary"
        if state == "FAILED" and not detail:
            detail = first_failure(text, e.name)
        if state in ("TIMEOUT", "CRASHED"):
            last = first_failure(text, e.name)
            if last:
                detail += f"; {last}"
        outcomes.append(Outcome(e.name, state, squash(detail), d, str(out_path.relative_to(HERE))))
    with _print_lock:
        for o in outcomes:
            print(f"  {o.state:8} {o.name:48} {o.duration:7.1f}s  {o.detail[:120]}", flush=True)
    return outcomes


def first_failure(text: str, name: str) -> str:
    for line in text.splitlines():
        if "TEST FAILURE" in line or "Test failure" in line or "### Test" in line and "failed" in line.lower():
            return line.strip()
    lines = [l for l in text.splitlines() if name in l]
    return lines[-1].strip() if lines else ""


def squash(s: str, limit: int = 300) -> str:
    s = " ".join(s.replace("|", "/").split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


# Tests whose outcome depends on a race inside the client, whatever the broker does: they get
# more runs before they count as failed. Each with the race that makes it flaky.
CLIENT_RACES = {
    # The app thread purges as soon as the first ProduceResponse arrives; when it wins against
    # the client's own broker thread, the second batch is still queued, not yet in flight.
    "0086_purge_remote": "purge races the client's broker thread building the second ProduceRequest",
}
RACY_RUNS = 5


def run_entries(src: Path, entries: list[Entry], quick: bool, logdir: Path,
                retry: set[str] | None = None) -> dict[str, Outcome]:
    """Runs the entries; those in `retry` that did not pass get one more run (their group's),
    RACY_RUNS in all for CLIENT_RACES, and the last run's outcome counts; the first failure
    stays in the detail, marked flaky."""
    groups = make_groups(entries)
    # Local groups first (fast, check the build), then by number.
    groups.sort(key=lambda g: (not g.local, g.number))
    results: dict[str, Outcome] = {}
    if logdir.exists():
        shutil.rmtree(logdir)
    logdir.mkdir(parents=True)

    def pool_run(gs: list[Group], ldir: Path) -> None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, JOBS)) as pool:
            futs = [pool.submit(run_group, src, g, quick, ldir) for g in gs]
            for f in concurrent.futures.as_completed(futs):
                for o in f.result():
                    results[o.name] = o

    def runs_allowed(g: Group) -> int:
        return RACY_RUNS if any(e.name in CLIENT_RACES for e in g.entries) else 2

    pool_run(groups, logdir)
    retry = retry or set()
    first: dict[str, Outcome] = {}
    for run in range(2, RACY_RUNS + 1):
        again = [g for g in groups if run <= runs_allowed(g) and any(
            e.name in retry and results[e.name].state not in ("PASSED", "SKIPPED") for e in g.entries)]
        if not again:
            break
        for g in again:
            for e in g.entries:
                first.setdefault(e.name, results[e.name])
        log(f"running again (run {run}): {', '.join(g.key for g in again)}")
        pool_run(again, logdir / f"retry{run}")
    for name, o in first.items():
        if o.state not in ("PASSED", "SKIPPED") and results[name].state == "PASSED":
            results[name].detail = f"flaky: passed on a later run; first run {o.state}: {o.detail}"
    return results


# ----------------------------------------------------------------------------- modes


def closing_line(passed: int, failed: int, skipped: int) -> None:
    print(f"librdkafka: {passed} passed, {failed} failed, {skipped} skipped")


def cmd_ratchet(src: Path) -> int:
    entries = {e.name: e for e in load_entries(src)}
    expected = read_expected()
    unknown = [n for n in expected if n not in entries]
    if unknown:
        log(f"{EXPECTED.name} names unknown tests: {unknown}")
        return 1
    chosen = [entries[n] for n in expected]
    log(f"ratchet: {len(chosen)} tests of {EXPECTED.name} in quick mode, {JOBS} at a time, against fresh weirs")
    t0 = time.monotonic()
    logdir = BUILD / "logs" / ("ratchet-" + GROUP_PROTOCOL if GROUP_PROTOCOL else "ratchet")
    res = run_entries(src, chosen, quick=True, logdir=logdir, retry=set(expected))
    # A few tests skip themselves in quick mode ("Test skipped due to quick mode"): that is fine.
    bad = [res[n] for n in expected
           if res[n].state != "PASSED" and not (res[n].state == "SKIPPED" and "quick mode" in res[n].detail)]
    for o in bad:
        log(f"RATCHET FAILURE {o.name}: {o.state} {o.detail} (log: compat-tests/librdkafka/{o.log})")
    log(f"ratchet done in {time.monotonic() - t0:.0f}s")
    quick_skips = sum(res[n].state == "SKIPPED" for n in expected) - sum(o.state == "SKIPPED" for o in bad)
    closing_line(len(expected) - len(bad) - quick_skips, len(bad), quick_skips)
    return 1 if bad else 0


def cmd_compat(src: Path) -> int:
    entries = load_entries(src)
    expected = set(read_expected())
    to_run = [e for e in entries if e.local or not e.skip_reason or RUN_SKIPPED]
    log(f"compat: {len(to_run)} of {len(entries)} entries, full mode, {JOBS} at a time")
    t0 = time.monotonic()
    res = run_entries(src, to_run, quick=False, logdir=BUILD / "logs" / "compat",
                      retry=expected | {e.name for e in entries if e.local})
    elapsed = time.monotonic() - t0
    save_outcomes(res, elapsed)
    return report(src, entries, res, expected, elapsed)


OUTCOMES = BUILD / "logs" / "compat-outcomes.json"


def save_outcomes(res: dict[str, Outcome], elapsed: float) -> None:
    import json
    OUTCOMES.write_text(json.dumps({"elapsed": elapsed, "jobs": JOBS, "timeout": TIMEOUT_S,
                                    "outcomes": [o.__dict__ for o in res.values()]}, indent=1))


def cmd_report(src: Path) -> int:
    """RESULTS.md again from the last `compat` run's outcomes, with the current lists."""
    import json
    global JOBS, TIMEOUT_S
    data = json.loads(OUTCOMES.read_text())
    JOBS, TIMEOUT_S = data["jobs"], data["timeout"]
    res = {o["name"]: Outcome(**o) for o in data["outcomes"]}
    entries = load_entries(src)
    return report(src, entries, res, set(read_expected()), data["elapsed"])


def report(src: Path, entries: list[Entry], res: dict[str, Outcome], expected: set[str], elapsed: float) -> int:
    for e in entries:
        if e.name not in res:
            res[e.name] = Outcome(e.name, "NOT-RUN", e.skip_reason)
    write_results(src, entries, res, expected, elapsed)
    broker = [e for e in entries if not e.local]
    local = [e for e in entries if e.local]
    new = [e.name for e in broker if res[e.name].state == "PASSED" and e.name not in expected]
    regress = [n for n in sorted(expected) if res[n].state != "PASSED"]
    local_bad = [e.name for e in local if res[e.name].state not in ("PASSED", "SKIPPED")]
    if new:
        log("tests that pass but are not in expected-pass.txt (add them: the list only grows):")
        for n in new:
            log(f"  {n}")
    for n in regress:
        log(f"REGRESSION {n}: {res[n].state} {res[n].detail}")
    for n in local_bad:
        log(f"LOCAL (mock cluster) test failed: {n}: {res[n].state} {res[n].detail}")
    log(f"wrote {RESULTS} in {elapsed:.0f}s")
    bp = sum(res[e.name].state == "PASSED" for e in broker)
    bf = sum(res[e.name].state in ("FAILED", "TIMEOUT", "CRASHED") for e in broker)
    closing_line(bp, bf, len(broker) - bp - bf)
    return 1 if regress or local_bad else 0


def reason_for(e: Entry, o: Outcome) -> str:
    if o.state == "PASSED":
        return o.detail  # "flaky: ..." when it passed on the second run
    if o.state == "NOT-RUN":
        return e.skip_reason
    if o.state == "SKIPPED":
        return f"skipped by the suite: {o.detail}" if o.detail else "skipped by the suite"
    why = f"fails: {o.detail}" if o.state == "FAILED" else f"{o.state.lower()}: {o.detail}"
    if e.skip_reason:
        why = f"{e.skip_reason} ({why})"
    return why


def write_results(src: Path, entries: list[Entry], res: dict[str, Outcome], expected: set[str], elapsed: float) -> None:
    def count(group: list[Entry]) -> tuple[int, int, int]:
        p = sum(res[e.name].state == "PASSED" for e in group)
        f = sum(res[e.name].state in ("FAILED", "TIMEOUT", "CRASHED") for e in group)
        return p, f, len(group) - p - f

    broker = [e for e in entries if not e.local]
    local = [e for e in entries if e.local]
    bp, bf, bs = count(broker)
    lp, lf, ls = count(local)
    commit = subprocess.run(["git", "-C", str(COMPAT.parent), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# librdkafka test suite against Weir",
        "",
        "Generated by `make compat` (`compat-tests/librdkafka/run.py compat`; `run.py report` rewrites it from"
        " the last run's outcomes after an edit of the lists); do not edit by hand. Logs of that run:"
        " `compat-tests/librdkafka/.build/logs/compat/`.",
        "",
        f"- date: {now}, weir commit {commit}",
        "- librdkafka: 2.8.0 (Debian source package librdkafka 2.8.0-1), its tests/test-runner in full mode;"
        f" the suite is told the broker is Kafka {KAFKA_VERSION} (TEST_KAFKA_VERSION)",
        f"- {len(entries)} entries in the suite's test table: {len(broker)} talk to a broker (each run against"
        f" a fresh weir on 127.0.0.1), {len(local)} run on librdkafka's mock cluster (TEST_F_LOCAL, no weir)",
        f"- run time {elapsed / 60:.1f} min with {JOBS} test-runners in parallel; per-process timeout {int(TIMEOUT_S)}s",
        "",
        "| tests | pass | fail | skipped |",
        "| --- | ---: | ---: | ---: |",
        f"| **broker tests (against weir)** | **{bp}** | **{bf}** | **{bs}** |",
        f"| local tests (mock cluster) | {lp} | {lf} | {ls} |",
        "",
        f"Ratchet (`expected-pass.txt`, run by `make test` in quick mode): {len(expected)} tests.",
        "",
        "`fail` counts failures and timeouts. `skipped`: not run here (reason given), or skipped by the suite itself.",
        "",
        "## Broker tests",
        "",
        "| test | result | ratchet | reason |",
        "| --- | --- | --- | --- |",
    ]

    def row(e: Entry) -> str:
        o = res[e.name]
        state = {"PASSED": "pass", "FAILED": "fail", "TIMEOUT": "fail", "CRASHED": "fail"}.get(o.state, "skipped")
        rat = "yes" if e.name in expected else ("**new**" if o.state == "PASSED" and not e.local else "")
        return f"| {e.name} | {state} | {rat} | {reason_for(e, o).replace('|', '/')} |"

    lines += [row(e) for e in broker]
    lines += ["", "## Local tests (librdkafka's mock cluster, no weir)", "",
              "| test | result | ratchet | reason |", "| --- | --- | --- | --- |"]
    lines += [row(e) for e in local]
    lines.append("")
    RESULTS.write_text("\n".join(lines))


def cmd_list(src: Path) -> int:
    entries = load_entries(src)
    expected = set(read_expected())
    for e in entries:
        kind = "local" if e.local else ("ratchet" if e.name in expected else ("n/a" if e.skip_reason else "broker"))
        print(f"{e.name:48} {kind:8} {e.skip_reason}")
    b = [e for e in entries if not e.local]
    print(f"{len(entries)} entries: {len(b)} broker ({sum(bool(e.skip_reason) for e in b)} not applicable), "
          f"{len(entries) - len(b)} local; ratchet {len(expected)}")
    return 0


def cmd_run(src: Path, names: list[str]) -> int:
    entries = load_entries(src)
    chosen = [e for e in entries if any(e.name == n or e.number == n for n in names)]
    if not chosen:
        log(f"no such tests: {names}")
        return 1
    quick = os.environ.get("LRK_QUICK") == "1"
    res = run_entries(src, chosen, quick=quick, logdir=BUILD / "logs" / "run")
    bad = [o for o in res.values() if o.state not in ("PASSED", "SKIPPED")]
    closing_line(sum(o.state == "PASSED" for o in res.values()), len(bad),
                 sum(o.state == "SKIPPED" for o in res.values()))
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("ratchet", "compat", "list", "run", "setup", "report"):
        print(__doc__)
        return 2
    src = setup()
    if argv[1] == "setup":
        return 0
    try:
        if argv[1] == "ratchet":
            return cmd_ratchet(src)
        if argv[1] == "compat":
            return cmd_compat(src)
        if argv[1] == "list":
            return cmd_list(src)
        if argv[1] == "report":
            return cmd_report(src)
        return cmd_run(src, argv[2:])
    finally:
        for w in list(REGISTRY):  # only the weirs started here, by PID
            w._kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
