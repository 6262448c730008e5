'use strict'
// Usage: node produce_consume.js BROKER TOPIC COUNT GROUP TIME_LIMIT_MS
// Sends COUNT keyed messages with headers (producer.send), then a consumer in
// group GROUP reads from the beginning until it has COUNT messages.
// Prints {sent, received, duplicates, partitions, offsetsDense, valuesMatch}.
const { Partitioners } = require('kafkajs')
const { client, deadline, run } = require('./common')

const [broker, topic, countArg, groupId, limitArg] = process.argv.slice(2)
const count = parseInt(countArg, 10)
deadline(parseInt(limitArg || '20000', 10))

run(async () => {
  const kafka = client(broker, 'sluice-kafkajs-test')
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  let sent = 0
  for (let base = 0; base < count; base += 100) {
    const messages = []
    for (let i = base; i < Math.min(count, base + 100); i++) {
      messages.push({ key: `key-${i % 7}`, value: `kafkajs message ${i}`, headers: { seq: String(i) } })
    }
    const res = await producer.send({ topic, acks: -1, messages })
    for (const r of res) {
      if (r.errorCode !== 0) throw new Error(`produce error ${JSON.stringify(r)}`)
    }
    sent += messages.length
  }
  await producer.disconnect()

  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500 })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const seen = new Map() // value -> count
  const offsets = {} // partition -> offsets in arrival order
  let valuesMatch = true
  let received = 0
  await new Promise((resolve, reject) => {
    consumer.on(consumer.events.CRASH, e => reject(e.payload.error))
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        const value = message.value.toString()
        const seq = message.headers.seq.toString()
        if (value !== `kafkajs message ${seq}` || message.key.toString() !== `key-${seq % 7}`) {
          valuesMatch = false
        }
        seen.set(value, (seen.get(value) || 0) + 1)
        ;(offsets[partition] = offsets[partition] || []).push(Number(message.offset))
        received++
        if (seen.size >= count) resolve()
      }
    }).catch(reject)
  })
  await consumer.disconnect()
  let duplicates = 0
  for (const n of seen.values()) duplicates += n - 1
  let offsetsDense = true
  for (const list of Object.values(offsets)) {
    list.forEach((o, i) => { if (o !== i) offsetsDense = false })
  }
  return { sent, received, distinct: seen.size, duplicates, partitions: Object.keys(offsets).map(Number), offsetsDense, valuesMatch }
})
