// KafkaJS 2.2.4 against weir: admin + producer (consumers need groups; not yet).
// Usage: node roundtrip.js <host:port> <topic>
// Prints one line `RESULT <json>` on stdout; logs go to stderr. Exits non-zero on error.
'use strict';
const { Kafka, logLevel, CompressionTypes } = require('kafkajs');

const [broker, topic] = process.argv.slice(2);
if (!broker || !topic) {
  console.error('usage: node roundtrip.js <host:port> <topic>');
  process.exit(64);
}

const watchdog = setTimeout(() => {
  console.error('roundtrip.js: timed out');
  process.exit(3);
}, 90_000);

const kafka = new Kafka({
  clientId: 'weir-compat-kafkajs',
  brokers: [broker],
  connectionTimeout: 5000,
  requestTimeout: 30000,
  retry: { retries: 5, initialRetryTime: 200 },
  logLevel: logLevel.WARN,
  logCreator: () => ({ namespace, level, label, log }) => {
    process.stderr.write(`[kafkajs ${label} ${namespace}] ${log.message} ${JSON.stringify(log)}\n`);
  },
});

async function main() {
  const result = {};
  const admin = kafka.admin();
  await admin.connect();
  try {
    result.created = await admin.createTopics({
      topics: [{ topic, numPartitions: 3, replicationFactor: 1 }],
      waitForLeaders: true,
      timeout: 30000,
    });
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    result.metadata = md.topics.map((t) => ({
      name: t.name,
      partitions: t.partitions
        .map((p) => ({ partition: p.partitionId, leader: p.leader, replicas: p.replicas, isr: p.isr, error: p.partitionErrorCode }))
        .sort((a, b) => a.partition - b.partition),
    }));

    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await producer.connect();
    try {
      const mk = (i) => ({
        key: `key-${i % 5}`,
        value: `value-${i}`,
        headers: { idx: String(i) },
        partition: i % 3,
      });
      const plain = Array.from({ length: 30 }, (_, i) => mk(i));
      const gz = Array.from({ length: 30 }, (_, i) => mk(30 + i));
      result.sent = [];
      for (const [messages, compression] of [[plain, CompressionTypes.None], [gz, CompressionTypes.GZIP]]) {
        const meta = await producer.send({ topic, messages, acks: -1, compression });
        for (const m of meta) {
          result.sent.push({ partition: m.partition, errorCode: m.errorCode, baseOffset: m.baseOffset });
        }
      }
    } finally {
      await producer.disconnect();
    }

    const offsets = await admin.fetchTopicOffsets(topic);
    result.offsets = offsets
      .map((o) => ({ partition: o.partition, low: o.low, high: o.high, offset: o.offset }))
      .sort((a, b) => a.partition - b.partition);

    result.listed = (await admin.listTopics()).includes(topic);
    await admin.deleteTopics({ topics: [topic], timeout: 30000 });
    let gone = false;
    for (let i = 0; i < 50 && !gone; i++) {
      gone = !(await admin.listTopics()).includes(topic);
      if (!gone) await new Promise((r) => setTimeout(r, 200));
    }
    result.deleted = gone;
  } finally {
    await admin.disconnect();
  }
  return result;
}

main()
  .then((result) => {
    clearTimeout(watchdog);
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
    process.exit(0);
  })
  .catch((err) => {
    console.error('roundtrip.js failed:', err && err.stack ? err.stack : err);
    process.exit(1);
  });
