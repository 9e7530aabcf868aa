"""KafkaJS 2.2.4 (npm) against weir: admin createTopics / fetchTopicMetadata /
fetchTopicOffsets / deleteTopics and an idempotent producer (kafkajs/roundtrip.js)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lib.clients import run

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node not installed (scripts/install-test-deps.sh)")


def test_kafkajs_admin_and_producer(weir, topic):
    assert (HERE / "node_modules" / "kafkajs").is_dir(), "kafkajs missing: run scripts/install-test-deps.sh"
    p = run(["node", str(HERE / "kafkajs" / "roundtrip.js"), weir.bootstrap, topic], timeout=120, check=False)
    lines = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    assert p.returncode == 0 and lines, f"roundtrip.js exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr[-4000:]}"
    r = json.loads(lines[-1][len("RESULT "):])

    assert r["created"] is True
    (t,) = r["metadata"]
    assert t["name"] == topic
    assert [p["partition"] for p in t["partitions"]] == [0, 1, 2]
    for part in t["partitions"]:
        assert part["leader"] == 1 and part["replicas"] == [1] and part["isr"] == [1]
        assert part["error"] == 0

    # Two sends of 30 records spread over 3 partitions: 10 per partition each time.
    assert all(s["errorCode"] == 0 for s in r["sent"]), r["sent"]
    base = sorted((s["partition"], int(s["baseOffset"])) for s in r["sent"])
    assert base == [(0, 0), (0, 10), (1, 0), (1, 10), (2, 0), (2, 10)]

    assert [(o["partition"], o["low"], o["high"]) for o in r["offsets"]] == [
        (0, "0", "20"), (1, "0", "20"), (2, "0", "20")]
    assert r["listed"] is True
    assert r["deleted"] is True
