'use strict'
// Shared by the KafkaJS test scripts: a client for argv's broker with logs on
// stderr (stdout carries only the JSON result), and a hard time limit.
const { Kafka, logLevel } = require('kafkajs')

function stderrLogCreator () {
  return ({ namespace, level, label, log }) => {
    const { message, ...extra } = log
    process.stderr.write(`[kafkajs ${label} ${namespace}] ${message} ${JSON.stringify(extra)}\n`)
  }
}

function client (broker, clientId) {
  return new Kafka({
    clientId,
    brokers: [broker],
    connectionTimeout: 5000,
    requestTimeout: 10000,
    retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 1000 },
    logLevel: process.env.KAFKAJS_DEBUG ? logLevel.DEBUG : logLevel.WARN,
    logCreator: stderrLogCreator
  })
}

// Exits with status 3 when the script runs longer than ms.
function deadline (ms) {
  const t = setTimeout(() => {
    process.stderr.write(`time limit of ${ms} ms exceeded\n`)
    process.exit(3)
  }, ms)
  t.unref()
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

module.exports = { client, deadline, run }
