"""Turns the matrix RESULT lines into the markdown table of README.md.

    .venv/bin/python compat-tests/matrix/table.py RESULTS_FILE...          # print the table
    .venv/bin/python compat-tests/matrix/table.py --readme README.md FILE  # replace it in README.md
    (no file: stdin). test_matrix.py writes compat-tests/.build/matrix-results.txt.

One row per (client, scenario), one column per codec: pass / FAIL / unsupported /
needs groups / - (not run). Notes: what the row does, then the detail of any cell that is
not `pass`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import CODECS, SCENARIOS, parse_results  # noqa: E402

START = "<!-- client-matrix -->"
END = "<!-- /client-matrix -->"

ROWS = [
    ("confluent-kafka", "confluent-kafka 2.16.1 (librdkafka 2.16.0)"),
    ("kafka-python", "kafka-python 2.3.3"),
    ("aiokafka", "aiokafka 0.14.0"),
    ("kafkajs", "KafkaJS 2.2.4"),
    ("sarama", "sarama 1.22.1 (Debian)"),
    ("kcat", "kcat 1.7.1 (librdkafka 2.0.2)"),
    ("java-console", "kafka-console-producer / -consumer 3.9"),
    ("java-producer-perf-test", "kafka-producer-perf-test 3.9"),
    ("java-verifiable-producer", "kafka-verifiable-producer 3.9"),
    ("java-verifiable-consumer", "kafka-verifiable-consumer 3.9"),
]

# What each row does beyond the common scenario (README of the table, per client).
NOTES = {
    "confluent-kafka": "AdminClient topic; Consumer in assign mode",
    "kafka-python": "KafkaAdminClient topic; KafkaConsumer(group_id=None), fetch_max_bytes below its 1 MB frame limit",
    "aiokafka": "AIOKafkaAdminClient topic; AIOKafkaConsumer(group_id=None)",
    "kafkajs": "admin.createTopics; reads back with KafkaJS's own Fetch (cluster/broker layer, no group) "
               "plus admin.fetchTopicOffsets; snappy via kafkajs-snappy",
    "sarama": "ClusterAdmin topic; Version=V2_1_0_0, so Produce v3 and Fetch v4; ConsumePartition (no group)",
    "kcat": "topic auto-created by Metadata (num.partitions=6); same `-H` headers on every record; "
            "kcat sets no timestamps (checked against produce time)",
    "java-console": "2,000 records per codec, all codecs in one kafka-topics.sh topic; per-record headers "
                    "(parse.headers); no explicit timestamps; one consumer per partition",
    "java-producer-perf-test": "10,000 unkeyed records per codec; checked through kafka-get-offsets",
    "java-verifiable-producer": "1,000 records, acked count and end offsets",
    "java-verifiable-consumer": "200 records in a consumer group (`needs groups` if it gets no partitions "
                                "within 10 s)",
}

# What the `subscribe` row does, per client (shown on that row). Every `subscribe` cell: a fresh
# group, the first codec only (none) with the plain producer, auto.offset.reset=earliest, the same
# checks as assign mode, then the commit checked.
SUBSCRIBE_NOTES = {
    "confluent-kafka": "Consumer.subscribe in a fresh group, commit(); committed() = end offsets; a second "
                       "Consumer of the group reaches EOF on all 6 partitions without a record",
    "kafka-python": "KafkaConsumer(topic, group_id=...), commit(); committed() = end offsets; a second "
                    "KafkaConsumer of the group gets all 6 partitions at the end, reads nothing",
    "aiokafka": "AIOKafkaConsumer(topic, group_id=...), commit(); committed() = end offsets; a second "
                "AIOKafkaConsumer of the group gets all 6 partitions at the end, reads nothing",
    "kafkajs": "consumer.subscribe({ fromBeginning: true }) + run({ eachMessage }), auto commit; "
               "admin.fetchOffsets = end offsets; a second consumer of the group joins with all 6 "
               "partitions and fetches nothing",
    "sarama": "ConsumerGroup.Consume + MarkMessage, commit at Close; Consumer.Offsets.Retention set so "
              "that sarama 1.22 commits with OffsetCommit v2 (it sends v1 otherwise, which Kafka 4 "
              "(KIP-896) and weir refuse by closing the connection); ListConsumerGroupOffsets = end "
              "offsets; a second ConsumerGroup claims all 6 partitions at the end (InitialOffset), reads nothing",
    "kcat": "`kcat -G group topic -e` (balanced consumer, auto commit); a second `kcat -G` of the group "
            "is assigned all 6 partitions and reaches their end without a record",
    "java-console": "2,000 records; two kafka-console-consumer --group --from-beginning in parallel read "
                    "every record exactly once between them; kafka-consumer-groups --describe: "
                    "CURRENT-OFFSET = LOG-END-OFFSET on all 6 partitions",
}

# Cells that pass against weir but that Apache Kafka would refuse (broker deviations), by
# (client, scenario, codec); shown as `pass†` with the footnote.
DEVIATIONS = {
    ("sarama", s, "zstd"): "sarama 1.22 sends zstd batches in Produce v3; Apache Kafka refuses zstd below "
                           "Produce v7 with UNSUPPORTED_COMPRESSION_TYPE (76; ProduceRequest.validateRecords), "
                           "weir appends them. (Fetch v4 of zstd batches is fine: Kafka refuses it only on topics "
                           "whose compression.type is zstd)"
    for s in SCENARIOS if s != "subscribe"
}

LABEL = {"pass": "pass", "fail": "**FAIL**", "unsupported": "unsupported", "needs-groups": "needs groups"}


def table(results) -> str:
    cells = {(r.client, r.scenario, r.codec): r for r in results}
    rows_known = {name for name, _ in ROWS}
    extra = sorted({r.client for r in results} - rows_known)
    out = [
        "| client | scenario | " + " | ".join(CODECS) + " | notes |",
        "| --- | --- | " + " | ".join("---" for _ in CODECS) + " | --- |",
    ]
    footnotes: dict[str, int] = {}
    for name, label in ROWS + [(e, e) for e in extra]:
        first = True
        shown: set[str] = set()  # non-pass details already in an earlier row of this client
        for scenario in SCENARIOS:
            row = [cells.get((name, scenario, c)) for c in CODECS]
            if not any(row):
                continue
            texts, details = [], []
            for codec, r in zip(CODECS, row):
                if r is None:
                    texts.append("-")
                    continue
                t = LABEL.get(r.status, r.status)
                dev = DEVIATIONS.get((name, scenario, codec))
                if dev and r.status == "pass":
                    n = footnotes.setdefault(dev, len(footnotes) + 1)
                    t += "†" * n
                texts.append(t)
                if r.status != "pass" and r.detail and r.detail != "-":
                    d = f"{codec}: {r.detail}" if r.status == "fail" else r.detail
                    if d not in details and d not in shown:
                        details.append(d)
                        shown.add(d)
            # The row's description once per client; the details of non-pass cells on every row.
            desc = NOTES.get(name, "") if first else ""
            if scenario == "subscribe":
                desc = "; ".join(x for x in [desc, "one codec (the first), plain producer, fresh group from the "
                                             "earliest offset, same checks as assign mode",
                                             SUBSCRIBE_NOTES.get(name, "")] if x)
            note = "; ".join(x for x in [desc] + details if x)
            note = note.replace("|", "\\|")
            out.append(f"| {label if first else ''} | {scenario} | " + " | ".join(texts) + f" | {note} |")
            first = False
    for text, n in footnotes.items():
        out.append("")
        out.append("†" * n + " " + text + ".")
    return "\n".join(out) + "\n"


def replace_in_readme(readme: Path, body: str) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: markers {START} / {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{body}{END}{tail}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="files with RESULT lines (default: stdin)")
    ap.add_argument("--readme", help="replace the table between the client-matrix markers of this file")
    a = ap.parse_args()
    text = "".join(Path(f).read_text() for f in a.files) if a.files else sys.stdin.read()
    body = table(parse_results(text))
    if a.readme:
        replace_in_readme(Path(a.readme), body)
    else:
        sys.stdout.write(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
