"""Cluster metadata on the Raft quorum (a quorum of one node for now).

- Every metadata change a client saw acknowledged (CreateTopics, CreatePartitions,
  IncrementalAlterConfigs, DeleteTopics) is there after kill -9.
- A data dir written by a single-node Weir before the quorum (its `metadata.log`)
  starts with its cluster id, brokers, topics and configs, imported once.
- A damaged quorum database stops the broker with a message naming it; nothing
  is recreated over it.
- Kafka's `kafka-metadata-quorum.sh describe` reads the quorum (DescribeQuorum).
"""

from __future__ import annotations

import json
import struct
import uuid

import crc32c
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions

from lib.clients import (JAVA_ENV, admin, consume_assigned, create_topic, java_available, java_tool, produce, run,
                         wait_until)
from lib.weir import Weir, WeirError

METADATA_DIR = "__cluster_metadata-0"


def _topics(bootstrap: str) -> dict[str, int]:
    md = admin(bootstrap).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in md.topics.items() if not name.startswith("__")}


def _config(bootstrap: str, topic: str, name: str) -> str | None:
    a = admin(bootstrap)  # kept alive until the answer is in
    futures = a.describe_configs([ConfigResource("topic", topic)])
    entries = next(iter(futures.values())).result(timeout=10)
    return entries[name].value if name in entries else None


def test_acknowledged_metadata_changes_survive_kill9(weir_factory, topic):
    w = weir_factory(name="weir-metadata-kill9")
    names = [f"{topic}-{i}" for i in range(20)]
    for name in names:
        create_topic(w.bootstrap, name, partitions=2)
    a = admin(w.bootstrap)
    a.create_partitions([NewPartitions(names[0], 5)])[names[0]].result(timeout=10)
    resource = ConfigResource("topic", names[1], incremental_configs=[
        ConfigEntry("retention.ms", "4242", incremental_operation=AlterConfigOpType.SET)])
    next(iter(a.incremental_alter_configs([resource]).values())).result(timeout=10)
    a.delete_topics([names[2]])[names[2]].result(timeout=10)
    wait_until(lambda: names[2] not in _topics(w.bootstrap), what="the deleted topic to go")

    w.kill9()
    w.start()
    expected = {name: 2 for name in names if name != names[2]}
    expected[names[0]] = 5
    assert _topics(w.bootstrap) == expected
    assert _config(w.bootstrap, names[1], "retention.ms") == "4242"
    # The restarted quorum goes on committing.
    create_topic(w.bootstrap, f"{topic}-after", partitions=1)
    assert _topics(w.bootstrap)[f"{topic}-after"] == 1


def _old_entry(records: list[dict]) -> bytes:
    """One entry of the pre-quorum metadata.log: u32 length, u32 CRC32C, JSON."""
    payload = json.dumps(records, separators=(",", ":")).encode()
    return struct.pack(">II", len(payload), crc32c.crc32c(payload)) + payload


def test_a_single_node_metadata_log_is_imported_once():
    w = Weir(name="weir-import")
    try:
        topic_id = str(uuid.uuid4())
        cluster_id = "aW1wb3J0ZWQtY2x1c3RlcjE"
        listener = {"name": "PLAINTEXT", "host": "127.0.0.1", "port": w.port, "security_protocol": 0}
        old = w.data_dir / METADATA_DIR
        old.mkdir(parents=True)
        (old / "metadata.log").write_bytes(
            _old_entry([{"type": "ClusterId", "cluster_id": cluster_id}])
            + _old_entry([
                {"type": "RegisterBroker", "id": 1, "incarnation_id": str(uuid.uuid4()),
                 "listeners": [listener], "rack": None, "fenced": True, "epoch": 1},
                {"type": "UnfenceBroker", "id": 1, "epoch": 1},
            ])
            + _old_entry([
                {"type": "Topic", "name": "legacy", "topic_id": topic_id},
                *({"type": "Partition", "topic_id": topic_id, "partition_id": p, "replicas": [1], "isr": [1],
                   "leader": 1, "leader_epoch": 0, "partition_epoch": 0} for p in range(2)),
                {"type": "Config", "resource_type": 2, "resource_name": "legacy", "name": "retention.ms",
                 "value": "777777"},
            ]))
        w.start()
        md = admin(w.bootstrap).list_topics(timeout=10)
        assert md.cluster_id == cluster_id
        assert len(md.topics["legacy"].partitions) == 2
        assert _config(w.bootstrap, "legacy", "retention.ms") == "777777"
        assert not (old / "metadata.log").exists()
        assert (old / "metadata.log.imported").exists()
        assert "imported the single-node metadata.log" in w.log_path.read_text(errors="replace")

        records = [{"value": f"v{i}".encode(), "partition": i % 2} for i in range(10)]
        produce(w.bootstrap, "legacy", records, conf={"acks": "all"})
        w.restart()
        assert admin(w.bootstrap).list_topics(timeout=10).cluster_id == cluster_id
        assert len(consume_assigned(w.bootstrap, "legacy", [0, 1], 10, timeout=30)) == 10
        assert w.log_path.read_text(errors="replace").count("imported the single-node metadata.log") == 1
    finally:
        w.cleanup()


def test_a_damaged_quorum_database_is_refused_and_left_alone():
    w = Weir(name="weir-damaged-quorum")
    try:
        w.start()
        assert w.stop() == 0, w.tail()
        current = w.data_dir / METADATA_DIR / "raft" / "CURRENT"
        current.write_bytes(b"MANIFEST-999999\n")
        try:
            w.start()
            raise AssertionError("weir started on a damaged metadata database")
        except WeirError:
            pass
        assert w.proc.returncode not in (None, 0)
        assert "cannot open the metadata quorum's database" in w.log_path.read_text(errors="replace")
        assert current.read_bytes() == b"MANIFEST-999999\n"
    finally:
        w.cleanup()


@pytest.mark.skipif(not java_available(), reason="java not on PATH (../shared/kafka-tools/install-deps.sh installs it)")
def test_kafka_metadata_quorum_describes_the_quorum(weir_factory, topic):
    w = weir_factory(name="weir-describe-quorum")
    create_topic(w.bootstrap, topic, partitions=3)
    tool = [str(java_tool("kafka-metadata-quorum")), "--bootstrap-server", w.bootstrap, "describe"]
    status = dict(
        (key.strip(), value.strip())
        for key, value in (line.split(":", 1) for line in run(tool + ["--status"], env=JAVA_ENV).stdout.splitlines()
                           if ":" in line))
    assert status["ClusterId"] == admin(w.bootstrap).list_topics(timeout=10).cluster_id
    assert status["LeaderId"] == "1"
    assert int(status["LeaderEpoch"]) >= 1
    high_watermark = int(status["HighWatermark"])
    assert high_watermark > 0
    assert '"id": 1' in status["CurrentVoters"] and status["CurrentObservers"] == "[]"

    # One more metadata change moves the high watermark; the leader is its own only voter.
    create_topic(w.bootstrap, f"{topic}-more", partitions=1)
    rows = [line.split() for line in run(tool + ["--replication"], env=JAVA_ENV).stdout.splitlines()[1:] if line.strip()]
    assert len(rows) == 1, rows
    node_id, _directory, log_end_offset, lag, last_fetch, last_caught_up, role = rows[0]
    assert (node_id, lag, role) == ("1", "0", "Leader")
    assert int(log_end_offset) > high_watermark
    assert int(last_fetch) > 0 and int(last_caught_up) > 0


def test_meta_properties_ties_the_data_dir_to_its_node_and_cluster():
    w = Weir(name="weir-meta-properties")
    try:
        w.start()
        cluster_id = admin(w.bootstrap).list_topics(timeout=10).cluster_id
        path = w.data_dir / "meta.properties"
        original = path.read_text()
        lines = dict(line.split("=", 1) for line in original.splitlines() if "=" in line)
        assert (lines["version"], lines["node.id"], lines["cluster.id"]) == ("1", "1", cluster_id)
        assert len(lines["directory.id"]) == 22
        assert w.stop() == 0, w.tail()

        def refused(expected: str) -> None:
            try:
                w.start()
                raise AssertionError(f"weir started although it should refuse: {expected}")
            except WeirError:
                pass
            assert w.proc.returncode not in (None, 0)
            assert expected in w.log_path.read_text(errors="replace").rsplit("===== start #", 1)[-1]

        # Another node's directory.
        w.overrides["node.id"] = 2
        refused("Configured node.id `2` doesn't match stored node.id `1'")
        w.overrides["node.id"] = 1
        # Another cluster's directory.
        path.write_text(original.replace(cluster_id, "b3RoZXItY2x1c3Rlci0xMjM"))
        refused(f"Invalid cluster.id in: {path}. Expected {cluster_id}, but read b3RoZXItY2x1c3Rlci0xMjM")
        # Put back, it starts and keeps the file as it was.
        path.write_text(original)
        w.start()
        assert path.read_text() == original
    finally:
        w.cleanup()
