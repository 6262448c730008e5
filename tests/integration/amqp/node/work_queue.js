'use strict'
// Usage: node work_queue.js PORT QUEUE COUNT WORKERS TIME_LIMIT_MS
// A work queue: COUNT persistent tasks published on a confirm channel
// (waitForConfirms) to the durable QUEUE, then WORKERS consumers, each on its own
// channel with prefetch 1, ack every task after a short "work" pause. The first
// delivery the first worker sees is rejected with requeue once, so it must come
// back (redelivered) to some worker.
// Prints {published, received: {task: [worker, redelivered][]}, perWorker,
//         maxInFlight, remaining, consumers}.
const { connect, deadline, sleep, waitFor, run } = require('./common')

const [port, queue, countArg, workersArg, limitArg] = process.argv.slice(2)
const count = parseInt(countArg, 10)
const workers = parseInt(workersArg, 10)
deadline(parseInt(limitArg || '20000', 10))

run(async () => {
  const conn = await connect(port)
  const pub = await conn.createConfirmChannel()
  await pub.assertQueue(queue, { durable: true })
  for (let i = 0; i < count; i++) {
    pub.sendToQueue(queue, Buffer.from(`task-${i}`), { persistent: true, messageId: `id-${i}` })
  }
  await pub.waitForConfirms()

  const received = {}
  const perWorker = new Array(workers).fill(0)
  const inFlight = new Array(workers).fill(0)
  let maxInFlight = 0
  let acked = 0
  let rejectedOnce = false
  const channels = []
  for (let w = 0; w < workers; w++) {
    const ch = await conn.createChannel()
    await ch.prefetch(1)
    channels.push(ch)
    await ch.consume(queue, async msg => {
      inFlight[w]++
      maxInFlight = Math.max(maxInFlight, inFlight[w])
      const body = msg.content.toString()
      if (w === 0 && !rejectedOnce) {
        rejectedOnce = true
        inFlight[w]--
        ch.reject(msg, true)
        return
      }
      ;(received[body] = received[body] || []).push([w, msg.fields.redelivered])
      perWorker[w]++
      await sleep(2) // the "work"
      inFlight[w]--
      ch.ack(msg)
      acked++
    }, { noAck: false })
  }
  await waitFor(`${count} acked tasks`, () => acked >= count, 15000)
  await sleep(200) // anything beyond COUNT would show up as a duplicate
  const check = await pub.checkQueue(queue)
  for (const ch of channels) await ch.close()
  await conn.close()
  return {
    published: count,
    received,
    perWorker,
    maxInFlight,
    remaining: check.messageCount,
    consumers: check.consumerCount
  }
})
