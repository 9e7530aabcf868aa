"""The client compatibility matrix (compat-tests/matrix/): every client runs the same scenario
(6-partition topic, 10,000 keyed records with headers and timestamps per codec, plain and
idempotent producer, read back in assign mode and checked; then `subscribe`: one codec read by
a consumer group from the earliest offset, committed, the commit checked) against one weir
started for this module with num.partitions=6 (kcat's topics come from Metadata auto-creation)
and group.initial.rebalance.delay.ms=200.

One test per client. A test fails when the client's program fails or times out, when a cell it
must report is missing, or when a cell is not `pass` and not one of the client's declared
non-pass cells (matrix/run.py: `expected`, e.g. KafkaJS lz4 = unsupported). The RESULT lines are
appended to compat-tests/.build/matrix-results.txt; matrix/table.py turns them into the README
table.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from matrix import run as matrix

RESULTS = matrix.BUILD / "matrix-results.txt"


@pytest.fixture(scope="module")
def matrix_weir():
    from lib.weir import Weir

    w = Weir(matrix.BROKER_OVERRIDES, name="weir-matrix")
    try:
        w.start()
    except Exception:
        w.cleanup()
        raise
    matrix.BUILD.mkdir(exist_ok=True)
    RESULTS.write_text("")
    yield w
    w.cleanup()


def first_batch_producer_ids(data_dir: Path, topics: set[str]) -> dict[str, list[int]]:
    """producerId of the first record batch of every non-empty partition of `topics`, read from
    the broker's data directory (Kafka's layout: <topic>-<partition>/<base offset>.log; v2 batch
    header: baseOffset 8, batchLength 4, leaderEpoch 4, magic 1, crc 4, attributes 2,
    lastOffsetDelta 4, baseTimestamp 8, maxTimestamp 8, then producerId 8)."""
    out: dict[str, list[int]] = {}
    for d in data_dir.iterdir():
        topic = d.name.rsplit("-", 1)[0]
        if topic not in topics:
            continue
        logs = sorted(d.glob("*.log"))
        if not logs:
            continue
        with open(logs[0], "rb") as f:
            head = f.read(51)
        if len(head) == 51:
            out.setdefault(topic, []).append(struct.unpack(">q", head[43:51])[0])
    return out


def topics_in(data_dir: Path) -> set[str]:
    return {d.name.rsplit("-", 1)[0] for d in data_dir.iterdir() if d.is_dir()}


@pytest.mark.parametrize("name", list(matrix.CLIENTS))
def test_client_matrix(matrix_weir, name):
    client = matrix.CLIENTS[name]
    why = client.missing()
    if why:
        pytest.skip(why)
    if not matrix_weir.alive():
        matrix_weir.start()
    before = topics_in(matrix_weir.data_dir)
    r = matrix.run_client(client, matrix_weir.bootstrap)
    new_topics = topics_in(matrix_weir.data_dir) - before
    with RESULTS.open("a") as f:
        f.writelines(res.line + "\n" for res in r.results)
    ctx = f"\n--- {name} stdout ---\n{r.stdout[-4000:]}\n--- {name} stderr (tail) ---\n{r.stderr[-4000:]}"

    assert r.returncode is not None, f"{name} timed out after {client.timeout}s{ctx}"
    got = {(x.client, x.scenario, x.codec): x for x in r.results}
    missing = [c for c in client.cells if c not in got]
    assert not missing, f"{name}: no RESULT for {missing}{ctx}"
    bad = []
    for cell, res in got.items():
        if res.status == "pass":
            continue
        allowed = client.expected.get(cell)
        if allowed is None or res.status != allowed[0]:
            bad.append(f"{'/'.join(cell)}: {res.status}: {res.detail}")
    assert not bad, f"{name}: cells not passing:\n  " + "\n  ".join(bad) + ctx
    assert r.returncode == 0, f"{name} exited {r.returncode}{ctx}"

    # The idempotent cells really produced with a producer id, the plain ones without
    # (a client may quietly drop enable.idempotence, e.g. when it misjudges the broker version).
    wrong = []
    for topic, pids in sorted(first_batch_producer_ids(matrix_weir.data_dir, new_topics).items()):
        if topic.startswith("matrix-") and "-idempotent-" in topic and min(pids) < 0:
            wrong.append(f"{topic}: batches without producer id {pids}")
        plain = "-produce-consume-" in topic or "-subscribe-" in topic
        if topic.startswith("matrix-") and plain and max(pids) >= 0:
            wrong.append(f"{topic}: plain producer wrote producer ids {pids}")
    assert not wrong, f"{name}: " + "; ".join(wrong)
