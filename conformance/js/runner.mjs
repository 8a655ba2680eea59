// The conformance scenario (conformance/scenario.py) run with the JavaScript neo4j-driver, on
// Node.js (client.mjs, plain Bolt over TCP) or in a web page (browser.html, Bolt over WebSocket).
// The caller passes the driver module, the scenario and an `emit` function that gets one record
// per step. Integers are written as {"$int": "<decimal>"} (a JS number cannot hold every 64-bit
// integer); everything else uses the normalised forms of scenario.py.

let neo4j
let isInt, isNode, isRelationship, isPath, isDate, isLocalDateTime, isLocalTime, isDuration,
  isDateTime, isTime

function bind (lib) {
  neo4j = lib;
  ({
    isInt, isNode, isRelationship, isPath, isDate, isLocalDateTime, isLocalTime, isDuration,
    isDateTime, isTime
  } = lib)
}

function num (value) {
  return isInt(value) ? value.toNumber() : Number(value)
}

function pad (value, width) {
  return String(num(value)).padStart(width, '0')
}

function clock (hour, minute, second, nanosecond) {
  const text = `${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}`
  return num(nanosecond) ? `${text}.${pad(nanosecond, 9)}` : text
}

function date (v) {
  return `${pad(v.year, 4)}-${pad(v.month, 2)}-${pad(v.day, 2)}`
}

function nodeOf (n) {
  return {
    $node: {
      id: normalize(n.identity),
      eid: n.elementId ?? null,
      labels: [...n.labels].sort(),
      props: normalize(n.properties)
    }
  }
}

function relOf (r) {
  return {
    $rel: {
      id: normalize(r.identity),
      eid: r.elementId ?? null,
      type: r.type,
      start: normalize(r.start),
      end: normalize(r.end),
      props: normalize(r.properties)
    }
  }
}

function normalize (value) {
  if (value === null || value === undefined) return null
  if (isInt(value)) return { $int: value.toString() }
  if (typeof value === 'bigint') return { $int: value.toString() }
  if (isNode(value)) return nodeOf(value)
  if (isRelationship(value)) return relOf(value)
  if (isPath(value)) {
    const nodes = [nodeOf(value.start)]
    const rels = []
    for (const segment of value.segments) {
      rels.push(relOf(segment.relationship))
      nodes.push(nodeOf(segment.end))
    }
    return { $path: { nodes, rels } }
  }
  if (isDateTime(value) || isTime(value)) throw new Error(`unexpected zoned value ${value}`)
  if (isLocalDateTime(value)) {
    return { $localdatetime: `${date(value)}T${clock(value.hour, value.minute, value.second, value.nanosecond)}` }
  }
  if (isDate(value)) return { $date: date(value) }
  if (isLocalTime(value)) {
    return { $localtime: clock(value.hour, value.minute, value.second, value.nanosecond) }
  }
  if (isDuration(value)) {
    return { $duration: [value.months, value.days, value.seconds, value.nanoseconds].map(num) }
  }
  if (Array.isArray(value)) return value.map(normalize)
  if (typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]))
  }
  return value
}

// Scenario parameters -> driver values: JSON integers become neo4j Integers (a plain JS number
// is sent as a Float), {"$date": ...} and friends become the driver's temporal types.
function param (value) {
  if (value === null) return null
  if (Number.isInteger(value)) return neo4j.int(value)
  if (Array.isArray(value)) return value.map(param)
  if (typeof value === 'object') {
    const keys = Object.keys(value)
    if (keys.length === 1) {
      const inner = value[keys[0]]
      switch (keys[0]) {
        case '$date': return new neo4j.types.Date(...inner.split('-').map(Number))
        case '$localdatetime': {
          const [d, t] = inner.split('T')
          const [y, mo, da] = d.split('-').map(Number)
          const [h, mi, s] = t.split(':').map(Number)
          return new neo4j.types.LocalDateTime(y, mo, da, h, mi, s, 0)
        }
        case '$localtime': {
          const [h, mi, s] = inner.split(':').map(Number)
          return new neo4j.types.LocalTime(h, mi, s, 0)
        }
        case '$duration': return new neo4j.types.Duration(...inner.map((x) => neo4j.int(x)))
      }
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, param(v)]))
  }
  return value
}

function resultOf (keys, records, summary) {
  const u = summary.counters.updates()
  return {
    keys,
    rows: records.map((record) => record.keys.map((k) => normalize(record.get(k)))),
    counters: {
      nodes_created: u.nodesCreated,
      relationships_created: u.relationshipsCreated,
      properties_set: u.propertiesSet,
      labels_added: u.labelsAdded
    },
    query_type: summary.queryType
  }
}

async function run (runner, query, params) {
  const result = runner.run(query, params)
  const keys = await result.keys()
  const { records, summary } = await result
  return resultOf(keys, records, summary)
}

function errorOf (error) {
  return { class: error.constructor?.name ?? 'Error', code: error.code ?? null, message: error.message ?? String(error) }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// A query run until its first row is [true] or the step's timeout has passed.
async function poll (session, step) {
  const deadline = Date.now() + step.timeout * 1000
  let attempts = 0
  while (true) {
    const found = await run(session, step.query, param(step.params))
    attempts += 1
    const rows = found.rows
    if ((rows.length === 1 && rows[0].length === 1 && rows[0][0] === true) || Date.now() > deadline) {
      return { result: found, attempts }
    }
    await sleep(200)
  }
}

// Runs every step of `scenario` with `lib` (the neo4j-driver module) and emits what the driver
// showed. `connectExtras()` adds what the environment knows to the connect step's report.
export async function runScenario (lib, scenario, emit, connectExtras = () => ({})) {
  bind(lib)
  const driver = neo4j.driver(scenario.uri, neo4j.auth.basic(scenario.user, scenario.password))
  const session = driver.session()
  try {
    for (const step of scenario.steps) {
      try {
        let value
        if (step.kind === 'connect') {
          const info = await driver.getServerInfo()
          const eager = await driver.executeQuery('RETURN 1 AS one')
          if (eager.records[0].get('one').toNumber() !== 1) throw new Error('RETURN 1 failed')
          value = {
            agent: info.agent,
            protocol: String(info.protocolVersion),
            address: info.address,
            database: eager.summary.database.name,
            ...connectExtras()
          }
        } else if (step.kind === 'run') {
          // session.run is an auto-commit transaction: stream clauses (step.autocommit) too
          value = await run(session, step.query, param(step.params))
        } else if (step.kind === 'poll') {
          value = await poll(session, step)
        } else if (step.kind === 'tx') {
          const tx = await session.beginTransaction()
          try {
            const results = []
            for (const query of step.queries) results.push(await run(tx, query, {}))
            if (step.end === 'commit') await tx.commit()
            else await tx.rollback()
            value = { results }
          } finally {
            if (tx.isOpen()) await tx.close()
          }
        } else if (step.kind === 'managed') {
          const results = await session.executeWrite(async (tx) => {
            const found = []
            for (const query of step.queries) found.push(await run(tx, query, {}))
            return found
          })
          value = { results }
        } else {
          throw new Error(`unknown step kind ${step.kind}`)
        }
        await emit({ step: step.name, ok: true, value })
      } catch (error) {
        await emit({ step: step.name, ok: false, error: errorOf(error), trace: String(error.stack ?? '') })
      }
    }
  } finally {
    await session.close()
    await driver.close()
  }
}
