// The JavaScript neo4j-driver on Node.js (plain Bolt over TCP, or TLS) running the conformance
// scenario (conformance/scenario.py, steps in runner.mjs): the scenario arrives as JSON on stdin,
// one JSON line per step goes to stdout.

import neo4j from 'neo4j-driver'
import { runScenario } from './runner.mjs'

function emit (record) {
  process.stdout.write(JSON.stringify(record) + '\n')
}

async function readStdin () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

const scenario = await readStdin()
const pkg = await import('neo4j-driver/package.json', { with: { type: 'json' } })
emit({ client: 'neo4j-driver-js', version: pkg.default.version })
await runScenario(neo4j, scenario, emit)
emit({ done: true })
