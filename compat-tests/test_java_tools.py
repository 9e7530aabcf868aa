"""Apache Kafka's own Java command-line tools (3.9, ../shared/kafka-tools) against weir."""

from __future__ import annotations

import json
import re

import pytest

from lib.clients import JAVA_ENV, KAFKA_TOOLS, java_available, java_tool, run, wait_until

pytestmark = [
    pytest.mark.java,
    pytest.mark.skipif(not java_available(), reason="java not on PATH (../shared/kafka-tools/install-deps.sh installs it)"),
]



def tool(weir, name, *args, input=None, timeout=90, check=True):
    path = java_tool(name)
    assert path.exists(), f"{path} missing (is {KAFKA_TOOLS} beside the repo?)"
    return run([str(path), "--bootstrap-server", weir.bootstrap, *args], input=input, timeout=timeout,
               check=check, env=JAVA_ENV)


def topics(weir, *args, **kw):
    return tool(weir, "kafka-topics", *args, **kw)


def describe(weir, topic) -> tuple[dict, list[dict]]:
    """Parses `kafka-topics --describe`: (topic line fields, [partition line fields])."""
    out = topics(weir, "--describe", "--topic", topic).stdout
    head, parts = None, []
    for line in out.splitlines():
        fields = {}
        for chunk in line.split("\t"):
            k, sep, v = chunk.strip().partition(":")
            if sep:
                fields[k.strip()] = v.strip()
        if "Partition" in fields:
            parts.append(fields)
        elif "PartitionCount" in fields:
            head = fields
    assert head is not None, f"no topic line in:\n{out}"
    return head, parts


def offsets(weir, topic, time_spec="-1") -> dict[int, int]:
    out = tool(weir, "kafka-get-offsets", "--topic", topic, "--time", time_spec).stdout
    res = {}
    for line in out.splitlines():
        t, p, o = line.strip().rsplit(":", 2)
        if t == topic:
            res[int(p)] = int(o)
    return res


def console_consume(weir, topic, n, partition=0, extra=()):
    out = tool(weir, "kafka-console-consumer", "--topic", topic, "--partition", str(partition),
               "--offset", "earliest", "--max-messages", str(n), "--timeout-ms", "30000", *extra,
               timeout=120, check=False)
    return [line for line in out.stdout.splitlines() if line], out


def test_kafka_topics_lifecycle(weir, topic):
    out = topics(weir, "--create", "--topic", topic, "--partitions", "3", "--replication-factor", "1").stdout
    assert f"Created topic {topic}." in out
    assert topic in topics(weir, "--list").stdout.split()

    head, parts = describe(weir, topic)
    assert head["Topic"] == topic
    assert head["PartitionCount"] == "3" and head["ReplicationFactor"] == "1"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", head["TopicId"]), head
    assert sorted(int(p["Partition"]) for p in parts) == [0, 1, 2]
    for p in parts:
        assert (p["Leader"], p["Replicas"], p["Isr"]) == ("1", "1", "1"), p

    topics(weir, "--alter", "--topic", topic, "--partitions", "5")
    wait_until(lambda: describe(weir, topic)[0]["PartitionCount"] == "5", what="5 partitions")

    # Creating it twice fails with a clear error.
    dup = topics(weir, "--create", "--topic", topic, "--partitions", "1", check=False)
    assert "already exists" in (dup.stdout + dup.stderr)

    topics(weir, "--delete", "--topic", topic)
    wait_until(lambda: topic not in topics(weir, "--list").stdout.split(), what=f"{topic} deleted")


def test_kafka_topics_describe_follows_the_describe_topic_partitions_cursor(weir, topic):
    # Kafka 3.9's admin client describes topics with DescribeTopicPartitions
    # (KIP-966) and follows its cursor across answers of at most 2 partitions.
    topics(weir, "--create", "--topic", topic, "--partitions", "5", "--replication-factor", "1")
    out = topics(weir, "--describe", "--topic", topic, "--partition-size-limit-per-response", "2").stdout
    parts = [line for line in out.splitlines() if "Partition:" in line]
    assert sorted(int(line.split("Partition:")[1].split()[0]) for line in parts) == [0, 1, 2, 3, 4], out


def test_console_producer_and_consumer(weir, topic):
    topics(weir, "--create", "--topic", topic, "--partitions", "1", "--replication-factor", "1")
    lines = [f"line {i} " + "x" * (i % 50) for i in range(100)]
    # The Java producer's defaults: enable.idempotence=true, acks=all.
    tool(weir, "kafka-console-producer", "--topic", topic, input="\n".join(lines) + "\n")
    got, out = console_consume(weir, topic, len(lines))
    assert got == lines, f"consumer printed {len(got)} lines\nstderr:\n{out.stderr[-3000:]}"
    assert offsets(weir, topic) == {0: 100}


def test_console_producer_keys_and_compression(weir, topic):
    topics(weir, "--create", "--topic", topic, "--partitions", "1", "--replication-factor", "1")
    lines = [f"k{i % 3}:v{i}" for i in range(30)]
    tool(weir, "kafka-console-producer", "--topic", topic, "--compression-codec", "zstd",
         "--property", "parse.key=true", "--property", "key.separator=:", input="\n".join(lines) + "\n")
    got, out = console_consume(weir, topic, len(lines), extra=(
        "--property", "print.key=true", "--property", "key.separator=:",))
    assert got == lines, out.stderr[-3000:]


def test_get_offsets_and_delete_records(weir, topic, tmp_path):
    topics(weir, "--create", "--topic", topic, "--partitions", "2", "--replication-factor", "1")
    tool(weir, "kafka-console-producer", "--topic", topic, "--property", "parse.key=false",
         input="".join(f"m{i}\n" for i in range(10)))
    latest = offsets(weir, topic)
    assert sum(latest.values()) == 10 and set(latest) == {0, 1}
    assert offsets(weir, topic, "-2") == {0: 0, 1: 0}

    # Delete the first records of whichever partition has at least 3.
    part = max(latest, key=lambda p: latest[p])
    assert latest[part] >= 3
    spec = tmp_path / "delete.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [{"topic": topic, "partition": part, "offset": 3}]}))
    out = tool(weir, "kafka-delete-records", "--offset-json-file", str(spec)).stdout
    assert re.search(rf"partition: {re.escape(topic)}-{part}\s+low_watermark: 3", out), out

    earliest = offsets(weir, topic, "-2")
    assert earliest[part] == 3
    assert offsets(weir, topic) == latest
    got, out = console_consume(weir, topic, latest[part] - 3, partition=part)
    assert len(got) == latest[part] - 3, out.stderr[-3000:]


def test_broker_api_versions(weir):
    out = tool(weir, "kafka-broker-api-versions").stdout
    assert re.search(rf"^127\.0\.0\.1:{weir.port} \(id: 1 rack: null", out, re.M), out
    for api in ("Produce(0)", "Fetch(1)", "ListOffsets(2)", "Metadata(3)", "ApiVersions(18)"):
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(api)), None)
        assert line is not None, f"{api} not listed"
        assert "UNSUPPORTED" not in line, line
