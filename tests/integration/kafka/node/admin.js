'use strict'
// Usage: node admin.js BROKER TOPIC PARTITIONS TIME_LIMIT_MS
// admin.createTopics, listTopics, fetchTopicMetadata, a second createTopics of
// the same name, deleteTopics and listTopics again. Prints what each returned.
const { client, deadline, run } = require('./common')

const [broker, topic, partsArg, limitArg] = process.argv.slice(2)
const numPartitions = parseInt(partsArg, 10)
deadline(parseInt(limitArg || '20000', 10))

run(async () => {
  const admin = client(broker, 'sluice-kafkajs-admin').admin()
  await admin.connect()
  const out = {}
  out.created = await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true })
  out.listedAfterCreate = (await admin.listTopics()).includes(topic)
  const md = await admin.fetchTopicMetadata({ topics: [topic] })
  out.partitions = md.topics[0].partitions.map(p => p.partitionId).sort((a, b) => a - b)
  out.createdAgain = await admin.createTopics({ topics: [{ topic, numPartitions }] })
  await admin.deleteTopics({ topics: [topic], timeout: 5000 })
  out.listedAfterDelete = (await admin.listTopics()).includes(topic)
  await admin.disconnect()
  return out
})
