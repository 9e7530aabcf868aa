// One KafkaJS 2.2.4 consumer in a group (its default round-robin assigner) until it is killed:
// prints the value of every record it reads, one per line.
// Usage: node group_member.js <host:port> <topic> <group>
'use strict';
const { Kafka, logLevel } = require('kafkajs');

const [broker, topic, groupId] = process.argv.slice(2);
if (!broker || !topic || !groupId) {
  console.error('usage: node group_member.js <host:port> <topic> <group>');
  process.exit(64);
}

const kafka = new Kafka({ clientId: 'weir-compat-kafkajs-member', brokers: [broker], logLevel: logLevel.WARN });
const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 200 });

async function main() {
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommitInterval: 100,
    eachMessage: async ({ message }) => {
      process.stdout.write(`${message.value.toString()}\n`);
    },
  });
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => consumer.disconnect().finally(() => process.exit(0)));
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
