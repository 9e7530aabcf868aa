// Matrix scenario for KafkaJS 2.2.4 (npm, compat-tests/node_modules): admin.createTopics, a
// producer (keyed with the Java-compatible DefaultPartitioner, headers, explicit timestamps; each
// codec; then idempotent: true), then reading all 6 partitions from offset 0 with KafkaJS's own
// Fetch request through its cluster/broker layer: the KafkaJS consumer always joins a group, and
// weir has no group coordinator yet. The records and the checks are the ones of common.py.
//
// Scenario `subscribe` (first codec only, plain producer): the regular KafkaJS consumer in a fresh
// group, subscribe({ fromBeginning: true }) + run({ eachMessage }) with its auto commit, reads
// everything; admin.fetchOffsets must then show the end offsets as committed, and a second
// consumer of the group must join with all 6 partitions and fetch nothing.
//
// Codecs: gzip is built in, snappy comes from kafkajs-snappy (pure JS). LZ4 and ZSTD need
// kafkajs-lz4 / @kafkajs/zstd, which build native addons: reported as unsupported.
//
// Usage: node kafkajs.js --bootstrap 127.0.0.1:PORT [--records N] [--codecs ...] [--scenarios ...]
'use strict';
const { Kafka, logLevel, CompressionTypes, CompressionCodecs, Partitioners } = require('kafkajs');

const CLIENT = 'kafkajs';
const PARTITIONS = 6;
const KEYS = 100;
const PAD = 'abcdefghij'.repeat(8);

const codecTypes = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
};
const unsupported = {};
try {
  CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy');
} catch (e) {
  unsupported.snappy = 'kafkajs-snappy not installed';
}
unsupported.lz4 = 'no pure-JS codec: kafkajs-lz4 needs the native lz4 addon';
unsupported.zstd = 'no pure-JS codec: @kafkajs/zstd needs the native cppzst addon';

function args() {
  const a = { records: 10000, codecs: 'none,gzip,snappy,lz4,zstd', scenarios: 'produce-consume,idempotent,subscribe' };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) a[argv[i].replace(/^--/, '')] = argv[i + 1];
  if (!a.bootstrap) {
    console.error('usage: node kafkajs.js --bootstrap host:port');
    process.exit(64);
  }
  a.records = Number(a.records);
  a.codecs = a.codecs.split(',').filter(Boolean);
  a.scenarios = a.scenarios.split(',').filter(Boolean);
  return a;
}

const keyOf = (i) => `key-${i % KEYS}`;
const valueOf = (i, codec) => `v${String(i).padStart(6, '0')}-${codec}-${PAD}`;
const headersOf = (i, codec) => ({ idx: String(i), codec });

function result(scenario, codec, status, detail, records, secs) {
  detail = (detail || '-').split(/\s+/).join(' ').slice(0, 600);
  process.stdout.write(
    `RESULT client=${CLIENT} scenario=${scenario} codec=${codec} status=${status} records=${records} ` +
      `secs=${secs.toFixed(1)} detail=${detail}\n`
  );
}

function makeKafka(bootstrap) {
  return new Kafka({
    clientId: 'weir-matrix-kafkajs',
    brokers: [bootstrap],
    connectionTimeout: 5000,
    requestTimeout: 30000,
    retry: { retries: 5, initialRetryTime: 200 },
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, label, log }) => {
      process.stderr.write(`[kafkajs ${label} ${namespace}] ${log.message} ${JSON.stringify(log)}\n`);
    },
  });
}

// KafkaJS's Cluster (metadata, brokers by node id) without a consumer group. The Kafka object
// keeps its cluster factory under a private symbol; the Cluster/Broker API behind it is what the
// KafkaJS consumer itself uses to fetch.
function makeCluster(kafka) {
  const sym = Object.getOwnPropertySymbols(kafka).find((s) => String(s).includes('createCluster'));
  if (!sym) throw new Error('KafkaJS cluster factory not found (KafkaJS version changed?)');
  return kafka[sym]({ allowAutoTopicCreation: false });
}

async function produce(kafka, topic, n, codec, baseTs, idempotent) {
  const producer = kafka.producer({
    idempotent,
    maxInFlightRequests: idempotent ? 1 : 5,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  try {
    const chunk = 1000;
    for (let start = 0; start < n; start += chunk) {
      const messages = [];
      for (let i = start; i < Math.min(n, start + chunk); i++) {
        messages.push({ key: keyOf(i), value: valueOf(i, codec), headers: headersOf(i, codec), timestamp: String(baseTs + i) });
      }
      const meta = await producer.send({ topic, messages, acks: -1, compression: codecTypes[codec] });
      const bad = meta.filter((m) => m.errorCode !== 0);
      if (bad.length) throw new Error(`produce errors: ${JSON.stringify(bad)}`);
    }
  } finally {
    await producer.disconnect();
  }
}

async function fetchAll(kafka, topic, ends) {
  const cluster = makeCluster(kafka);
  await cluster.connect();
  try {
    await cluster.addTargetTopic(topic);
    await cluster.refreshMetadata();
    const parts = Array.from({ length: PARTITIONS }, (_, p) => p);
    const leaders = cluster.findLeaderForPartitions(topic, parts);
    const got = [];
    const next = new Map(parts.map((p) => [p, 0]));
    const deadline = Date.now() + 60000;
    for (const [nodeId, leaderParts] of Object.entries(leaders)) {
      const broker = await cluster.findBroker({ nodeId });
      for (;;) {
        const want = leaderParts.filter((p) => next.get(p) < ends[p]);
        if (!want.length) break;
        if (Date.now() > deadline) throw new Error(`fetch timed out at ${JSON.stringify([...next])}`);
        const resp = await broker.fetch({
          replicaId: -1,
          isolationLevel: 1,
          maxWaitTime: 500,
          minBytes: 1,
          maxBytes: 10485760,
          topics: [{ topic, partitions: want.map((p) => ({ partition: p, fetchOffset: String(next.get(p)), maxBytes: 1048576 })) }],
        });
        for (const t of resp.responses) {
          for (const pd of t.partitions) {
            if (pd.errorCode !== 0) throw new Error(`fetch partition ${pd.partition}: error code ${pd.errorCode}`);
            for (const m of pd.messages) {
              const off = Number(m.offset);
              // A compressed batch comes whole: skip what lies before the fetch offset.
              if (off < next.get(pd.partition) || m.isControlRecord) continue;
              got.push({
                partition: pd.partition,
                offset: off,
                key: m.key ? m.key.toString() : null,
                value: m.value ? m.value.toString() : null,
                headers: Object.entries(m.headers || {}).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString() : String(v)]),
                timestamp: Number(m.timestamp),
              });
              next.set(pd.partition, off + 1);
            }
          }
        }
      }
    }
    return got;
  } finally {
    await cluster.disconnect();
  }
}

function check(got, n, codec, baseTs) {
  const problems = [];
  const add = (m) => problems.length < 8 && problems.push(m);
  if (got.length !== n) add(`count ${got.length} != ${n}`);
  const seen = new Map();
  const keyPart = new Map();
  const split = new Set();
  for (const g of got) {
    const i = Number(g.value.slice(1, 7));
    if (!Number.isInteger(i)) {
      add(`unparsable value ${g.value.slice(0, 40)}`);
      continue;
    }
    if (seen.has(i)) {
      add(`record ${i} twice`);
      continue;
    }
    seen.set(i, g);
    if (g.value !== valueOf(i, codec)) add(`record ${i}: value ${g.value.slice(0, 40)}`);
    if (g.key !== keyOf(i)) add(`record ${i}: key ${g.key}`);
    const want = JSON.stringify(Object.entries(headersOf(i, codec)));
    if (JSON.stringify(g.headers) !== want) add(`record ${i}: headers ${JSON.stringify(g.headers)} != ${want}`);
    if (g.timestamp !== baseTs + i) add(`record ${i}: timestamp ${g.timestamp} != ${baseTs + i}`);
    if (!keyPart.has(g.key)) keyPart.set(g.key, g.partition);
    else if (keyPart.get(g.key) !== g.partition && !split.has(g.key)) {
      split.add(g.key);
      add(`key ${g.key} in partitions ${keyPart.get(g.key)} and ${g.partition}`);
    }
  }
  let missing = 0;
  for (let i = 0; i < n; i++) if (!seen.has(i)) missing++;
  if (missing) add(`${missing} records missing`);
  const byPart = new Map();
  for (const g of got) {
    if (!byPart.has(g.partition)) byPart.set(g.partition, []);
    byPart.get(g.partition).push(g);
  }
  for (const [p, recs] of byPart) {
    const last = new Map();
    let prevOff = -1;
    for (const r of recs) {
      if (r.offset <= prevOff) add(`partition ${p}: offsets not increasing as fetched`);
      prevOff = r.offset;
      const i = Number(r.value.slice(1, 7));
      if (last.has(r.key) && last.get(r.key) >= i) add(`partition ${p}: key ${r.key} record ${i} after ${last.get(r.key)}`);
      last.set(r.key, i);
    }
  }
  return problems;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Runs a KafkaJS consumer of `group` until it holds all 6 partitions and `done(got, fetches)`
// (fetches = Fetch rounds since it joined with all 6) is true; returns what it read.
async function runGroupConsumer(kafka, group, topic, done, timeoutMs) {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 1000, maxWaitTimeInMs: 500 });
  const got = [];
  let assigned = [];
  let fetches = 0;
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    assigned = (e.payload.memberAssignment[topic] || []).slice().sort();
    fetches = 0;
  });
  consumer.on(consumer.events.FETCH, () => {
    if (assigned.length === PARTITIONS) fetches++;
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        got.push({
          partition,
          offset: Number(message.offset),
          key: message.key ? message.key.toString() : null,
          value: message.value ? message.value.toString() : null,
          headers: Object.entries(message.headers || {}).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString() : String(v)]),
          timestamp: Number(message.timestamp),
        });
      },
    });
    const deadline = Date.now() + timeoutMs;
    while (!(assigned.length === PARTITIONS && done(got, fetches))) {
      if (Date.now() > deadline) {
        throw new Error(`group consumer after ${timeoutMs / 1000}s: assigned [${assigned}], ${got.length} records, ${fetches} fetches`);
      }
      await sleep(100);
    }
  } finally {
    await consumer.disconnect();
  }
  return got;
}

async function committedOffsets(admin, group, topic) {
  const res = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const out = {};
  for (const t of res) for (const p of t.partitions) out[p.partition] = Number(p.offset);
  return out;
}

async function subscribeCell(kafka, a, codec) {
  const topic = `matrix-kafkajs-subscribe-${codec}-${process.pid}-${Date.now() % 1000000}`;
  const group = `group-${topic}`;
  const baseTs = (Math.floor(Date.now() / 1000) - 3600) * 1000;
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true, timeout: 30000 });
    await produce(kafka, topic, a.records, codec, baseTs, false);
    const ends = {};
    for (const o of await admin.fetchTopicOffsets(topic)) ends[o.partition] = Number(o.high);
    const atEnd = (c) => Object.keys(ends).length === PARTITIONS && Object.entries(ends).every(([p, e]) => c[p] === e);
    // Read everything; the consumer commits after each batch (autoCommit), so wait until the
    // committed offsets reach the end before it leaves.
    let committed = {};
    const got = await runGroupConsumer(kafka, group, topic, (g) => g.length >= a.records, 60000);
    const problems = check(got, a.records, codec, baseTs);
    const deadline = Date.now() + 15000;
    while (!atEnd((committed = await committedOffsets(admin, group, topic))) && Date.now() < deadline) await sleep(200);
    if (!atEnd(committed)) problems.push(`committed offsets ${JSON.stringify(committed)} != end offsets ${JSON.stringify(ends)}`);
    // A second member of the group starts at the committed offsets: two fetch rounds, no record.
    const again = await runGroupConsumer(kafka, group, topic, (g, fetches) => fetches >= 2, 30000);
    if (again.length) problems.push(`second consumer of the group read ${again.length} records (first p${again[0].partition}@${again[0].offset})`);
    return problems;
  } finally {
    await admin.disconnect();
  }
}

async function cell(kafka, a, scenario, codec) {
  if (scenario === 'subscribe') return subscribeCell(kafka, a, codec);
  const topic = `matrix-kafkajs-${scenario}-${codec}-${process.pid}-${Date.now() % 1000000}`;
  const baseTs = (Math.floor(Date.now() / 1000) - 3600) * 1000;
  const admin = kafka.admin();
  await admin.connect();
  try {
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
      waitForLeaders: true,
      timeout: 30000,
    });
    if (!created) throw new Error(`createTopics(${topic}) returned false`);
    await produce(kafka, topic, a.records, codec, baseTs, scenario === 'idempotent');
    const offsets = await admin.fetchTopicOffsets(topic);
    const ends = {};
    for (const o of offsets) ends[o.partition] = Number(o.high);
    const total = Object.values(ends).reduce((x, y) => x + y, 0);
    const problems = [];
    if (offsets.length !== PARTITIONS) problems.push(`fetchTopicOffsets: ${offsets.length} partitions`);
    if (total !== a.records) problems.push(`fetchTopicOffsets: high watermarks add up to ${total}, not ${a.records}`);
    const got = await fetchAll(kafka, topic, ends);
    return problems.concat(check(got, a.records, codec, baseTs));
  } finally {
    await admin.disconnect();
  }
}

async function main() {
  const a = args();
  const kafka = makeKafka(a.bootstrap);
  let failed = false;
  for (const scenario of a.scenarios) {
    // `subscribe`: the first codec only.
    for (const codec of scenario === 'subscribe' ? a.codecs.slice(0, 1) : a.codecs) {
      const t0 = Date.now();
      if (unsupported[codec]) {
        result(scenario, codec, 'unsupported', unsupported[codec], 0, 0);
        continue;
      }
      let problems;
      try {
        problems = await cell(kafka, a, scenario, codec);
      } catch (e) {
        console.error(e && e.stack ? e.stack : e);
        problems = [`${e && e.name}: ${e && e.message}`];
      }
      if (problems.length) failed = true;
      result(scenario, codec, problems.length ? 'fail' : 'pass', problems.join('; '), a.records, (Date.now() - t0) / 1000);
    }
  }
  return failed ? 1 : 0;
}

const watchdog = setTimeout(() => {
  console.error('kafkajs.js: timed out');
  process.exit(3);
}, 140000);

main()
  .then((code) => {
    clearTimeout(watchdog);
    process.exit(code);
  })
  .catch((err) => {
    console.error('kafkajs.js failed:', err && err.stack ? err.stack : err);
    process.exit(1);
  });
