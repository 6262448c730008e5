'use strict'
// Usage: node tx.js PORT QUEUE COUNT TIME_LIMIT_MS
// AMQP transactions with amqplib (driven by ../test_amqp_clients.py). amqplib has
// no tx helpers, so tx.select / commit / rollback go through Channel#rpc. COUNT
// messages are published in a transaction on one channel while another channel
// counts the queue; then a rollback of two more;
// then a consumer acks in a transaction it rolls back (the message comes back when
// its channel closes) and in one it commits; finally tx.select on a confirm
// channel must fail (406).
// Prints {beforeCommit, getBeforeCommit, afterCommit, afterRollback,
//         redeliveredAfterRollback, bodies, afterAckCommit, confirmToTx}.
// amqplib's method ids (class << 16 | method): its defs module is not exported.
const TX = { select: 0x5a000a, selectOk: 0x5a000b, commit: 0x5a0014, commitOk: 0x5a0015,
  rollback: 0x5a001e, rollbackOk: 0x5a001f }
const { connect, deadline, run } = require('./common')

const [port, queue, countArg, limitArg] = process.argv.slice(2)
const count = parseInt(countArg, 10)
deadline(parseInt(limitArg || '20000', 10))

const txSelect = ch => ch.rpc(TX.select, {}, TX.selectOk)
const txCommit = ch => ch.rpc(TX.commit, {}, TX.commitOk)
const txRollback = ch => ch.rpc(TX.rollback, {}, TX.rollbackOk)

run(async () => {
  const conn = await connect(port)
  const pub = await conn.createChannel()
  const look = await conn.createChannel()
  await look.assertQueue(queue)
  await txSelect(pub)
  for (let i = 0; i < count; i++) pub.sendToQueue(queue, Buffer.from(`m-${i}`))
  const beforeCommit = (await look.checkQueue(queue)).messageCount
  const getBeforeCommit = await look.get(queue, { noAck: true })
  await txCommit(pub)
  const afterCommit = (await look.checkQueue(queue)).messageCount
  pub.sendToQueue(queue, Buffer.from('rolled-back-1'))
  pub.sendToQueue(queue, Buffer.from('rolled-back-2'))
  await txRollback(pub)
  const afterRollback = (await look.checkQueue(queue)).messageCount

  let cons = await conn.createChannel()
  await txSelect(cons)
  const first = await cons.get(queue, { noAck: false })
  cons.ack(first)
  await txRollback(cons)
  await cons.close()
  cons = await conn.createChannel()
  await txSelect(cons)
  const bodies = []
  let redeliveredAfterRollback = null
  for (;;) {
    const m = await cons.get(queue, { noAck: false })
    if (!m) break
    if (redeliveredAfterRollback === null) redeliveredAfterRollback = m.fields.redelivered
    bodies.push(m.content.toString())
    cons.ack(m)
  }
  await txCommit(cons)
  await cons.close()
  const afterAckCommit = (await look.checkQueue(queue)).messageCount

  const conf = await conn.createConfirmChannel()
  let confirmToTx = null
  conf.on('error', err => { confirmToTx = confirmToTx || String(err.message) })
  try {
    await txSelect(conf)
    confirmToTx = 'accepted'
  } catch (err) {
    confirmToTx = String(err.message)
  }
  await pub.close()
  await look.close()
  await conn.close()
  return {
    beforeCommit, getBeforeCommit, afterCommit, afterRollback,
    redeliveredAfterRollback, bodies, afterAckCommit, confirmToTx
  }
})
