"""The fault-injection suite of issue 11 (see lib/chaos.py): idempotent acks=all
producers and a consumer group on a 3-node cluster (RF 3, min.insync.replicas 2)
while a seeded nemesis kills leaders, the active controller and random nodes
with kill -9, pauses leaders past their session (SIGSTOP), fills a follower's
disk or makes it read-only, and, where the test may create network namespaces
(root), partitions a leader or the active controller from the other nodes; a
checker then counts lost acknowledged writes, duplicates, reordering,
inconsistent reads, high watermarks and committed offsets going backwards, and
stalled consumers.

`test_chaos_short` (about a minute of faults, a random seed) runs in
`make test`; `make chaos` runs the long version: WEIR_CHAOS_SECONDS (default
1800) of faults. WEIR_CHAOS_SEED replays a run's schedule (the seed is
printed; the timing of the faults against the workload differs from run to
run). A failed run leaves its history (JSON) and the nodes' logs in
compat-tests/.chaos/<seed>/. WEIR_CHAOS_CLIENT_DEBUG (librdkafka debug
contexts) writes the consumers' logs to WEIR_CHAOS_CLIENT_LOG_DIR.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from lib.chaos import ANOMALIES, History, Nemesis, Workload, arm_disk_faults, check, final_log, table
from lib.clients import admin, unique_topic, wait_until
from lib.cluster import WeirCluster
from lib.network import available as network_available

SESSION_TIMEOUT_S = 3.0
OVERRIDES = {
    "broker.heartbeat.interval.ms": 300,
    "broker.session.timeout.ms": int(SESSION_TIMEOUT_S * 1000),
    "replica.lag.time.max.ms": 10000,
}
PARTITIONS = 3
KEEP = Path(__file__).resolve().parent / ".chaos"


def run_chaos(seconds: float, seed: int) -> None:
    print(f"\nchaos: seed {seed}, {seconds:.0f} s of faults (WEIR_CHAOS_SEED={seed} replays the schedule)")
    rng = random.Random(seed)
    network = network_available()
    if not network:
        print("chaos: no network namespaces here (not root?): no partitions in this run")
    with WeirCluster(3, overrides=OVERRIDES, name=f"chaos-{seed}", network=network) as c:
        arm_disk_faults(c)
        c.start()
        topic = unique_topic("chaos")
        client = admin(c.bootstrap())  # kept alive until the answer is in
        new = NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"})
        client.create_topics([new])[topic].result(30)
        wait_until(lambda: all(len(p.isrs) == 3 for p in admin(c.bootstrap()).list_topics(topic=topic, timeout=10)
                               .topics[topic].partitions.values()), timeout=30, what="full ISRs")
        history = History()
        workload = Workload(c.bootstrap, topic, PARTITIONS, history)
        nemesis = Nemesis(c, topic, PARTITIONS, rng.randrange(1 << 30), history, SESSION_TIMEOUT_S)
        workload.start()
        wait_until(lambda: len(history.acked) >= 200, timeout=60, what="acknowledgements before the first fault")
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            nemesis.cycle()
            time.sleep(rng.uniform(1.0, 3.0))
        history.event("nemesis stopped")
        nemesis.wait_healthy()
        workload.stop()
        history.event("workload stopped")
        log = final_log(c.bootstrap(), topic, PARTITIONS)
        counts = check(history, log, workload.stalls)
        print(table(counts, nemesis.faults, seed, time.monotonic() - started))
        bad = {name: counts[name] for name in ANOMALIES if counts[name]}
        bad.update({name: n for name, n in counts.items() if name.startswith("consumer stalls") and n})
        if bad or nemesis.unhealed:
            keep = KEEP / str(seed)
            keep.mkdir(parents=True, exist_ok=True)
            history.dump(keep / "history.json")
            for node_id, node in c.nodes.items():
                shutil.copy(node.log_path, keep / f"node{node_id}.log")
            print(f"history and node logs kept in {keep}")
        assert not bad, f"anomalies (seed {seed}): {bad}"
        assert not nemesis.unhealed, nemesis.unhealed
        assert counts["_records acknowledged"] > 0


@pytest.mark.timeout(600)
def test_chaos_short():
    run_chaos(float(os.environ.get("WEIR_CHAOS_SHORT_SECONDS", "60")),
              int(os.environ.get("WEIR_CHAOS_SEED", random.randrange(1 << 30))))


@pytest.mark.chaos
@pytest.mark.timeout(int(os.environ.get("WEIR_CHAOS_SECONDS", "1800")) + 900)
def test_chaos_long():
    run_chaos(float(os.environ.get("WEIR_CHAOS_SECONDS", "1800")),
              int(os.environ.get("WEIR_CHAOS_SEED", random.randrange(1 << 30))))
