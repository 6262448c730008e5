'use strict'
// Shared by the amqplib test scripts (driven by ../test_amqp_clients.py): a
// connection to argv's broker, a hard time limit, and one JSON result on stdout
// (diagnostics go to stderr).
const amqplib = require('amqplib')

function connect (port) {
  return amqplib.connect({
    protocol: 'amqp',
    hostname: '127.0.0.1',
    port: parseInt(port, 10),
    username: 'guest',
    password: 'guest',
    heartbeat: 0
  }, { timeout: 5000 })
}

// Exits with status 3 when the script runs longer than ms.
function deadline (ms) {
  const t = setTimeout(() => {
    process.stderr.write(`time limit of ${ms} ms exceeded\n`)
    process.exit(3)
  }, ms)
  t.unref()
}

// Resolves after ms (a bounded pause).
function sleep (ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

// Resolves once cond() is true, polling every 10 ms; rejects after ms.
async function waitFor (what, cond, ms) {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(10)
  }
}

// Runs main; prints its result as JSON on stdout and exits 0, or the error and exits 1.
// An event loop that empties before main settles (a stalled client) exits 4.
function run (main) {
  process.on('beforeExit', () => {
    process.stderr.write('FAILED: the event loop emptied before the script finished\n')
    process.exit(4)
  })
  main().then(result => {
    process.stdout.write(JSON.stringify(result) + '\n')
    process.exit(0)
  }, err => {
    process.stderr.write(`FAILED: ${err && err.stack ? err.stack : err}\n`)
    process.exit(1)
  })
}

module.exports = { connect, deadline, sleep, waitFor, run }
