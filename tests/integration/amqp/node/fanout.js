'use strict'
// Usage: node fanout.js PORT EXCHANGE COUNT SUBSCRIBERS TIME_LIMIT_MS
// Pub/sub: a fanout EXCHANGE; one message is published before anyone subscribes
// (it must reach no one); then SUBSCRIBERS connections each bind an exclusive,
// server-named queue and consume without acks; COUNT messages are published.
// Prints {queues, bodies: [[body, ...] per subscriber], afterClose}.
const { connect, deadline, waitFor, run } = require('./common')

const [port, exchange, countArg, subsArg, limitArg] = process.argv.slice(2)
const count = parseInt(countArg, 10)
const subs = parseInt(subsArg, 10)
deadline(parseInt(limitArg || '20000', 10))

run(async () => {
  const pubConn = await connect(port)
  const pub = await pubConn.createConfirmChannel()
  await pub.assertExchange(exchange, 'fanout', { durable: false })
  pub.publish(exchange, '', Buffer.from('before-subscribers'))
  await pub.waitForConfirms()

  const bodies = []
  const queues = []
  const subConns = []
  for (let s = 0; s < subs; s++) {
    const conn = await connect(port)
    subConns.push(conn)
    const ch = await conn.createChannel()
    const q = await ch.assertQueue('', { exclusive: true })
    await ch.bindQueue(q.queue, exchange, '')
    queues.push(q.queue)
    const mine = []
    bodies.push(mine)
    await ch.consume(q.queue, msg => mine.push(msg.content.toString()), { noAck: true })
  }
  for (let i = 0; i < count; i++) {
    pub.publish(exchange, 'ignored-by-fanout', Buffer.from(`event-${i}`))
  }
  await pub.waitForConfirms()
  await waitFor(`${count} events at every subscriber`,
    () => bodies.every(b => b.length >= count), 10000)
  await new Promise(resolve => setTimeout(resolve, 200)) // extras would show up here
  for (const c of subConns) await c.close()
  // Exclusive queues go with their connection.
  const afterClose = []
  for (const q of queues) {
    const ch = await pubConn.createChannel()
    ch.on('error', () => {})
    try {
      await ch.checkQueue(q)
      afterClose.push('exists')
    } catch (e) {
      afterClose.push(e.code === 404 ? 'gone' : `error ${e.message}`)
    }
  }
  await pubConn.close()
  return { queues, bodies, afterClose }
})
