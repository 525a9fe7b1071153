'use strict';
// tedious client for sqltunnel/tdstest tests.
//
// Usage: node client.js '<json config>'; the password comes from the
// TDSTEST_PASSWORD environment variable. Config: host, port, user, encrypt
// (true, false or "strict"), ca (PEM file to trust; trustServerCertificate is
// always false), cancel (bool), instance (a named instance: tedious asks SQL
// Server Browser on UDP 1434 of host for its port, and port is ignored).
//
// It prints JSON lines on stdout. With cancel set it prints
// {"event":"waitfor-sent"} after sending a long WAITFOR and waits for a line
// on stdin before canceling it, so the test can first make sure the server
// has the request. The last line is {"ok":true,"results":{...}} or
// {"ok":false,"error":"...","code":"..."}; the exit status is 0 either way.
//
// Needs tedious 19 (npm ci in this folder); tedious 20 needs Node 22.

const fs = require('fs');
const readline = require('readline');
const { Connection, Request } = require('tedious');

const cfg = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function connect() {
  const options = {
    database: 'master',
    appName: 'tdstest-tedious',
    encrypt: cfg.encrypt,
    trustServerCertificate: false,
    connectTimeout: 20000,
    requestTimeout: 0,
  };
  // tedious refuses port and instanceName together.
  if (cfg.instance) {
    options.instanceName = cfg.instance;
  } else {
    options.port = cfg.port;
  }
  if (cfg.ca) {
    options.cryptoCredentialsDetails = { ca: fs.readFileSync(cfg.ca) };
  }
  return new Promise((resolve, reject) => {
    const conn = new Connection({
      server: cfg.host,
      authentication: {
        type: 'default',
        options: { userName: cfg.user, password: process.env.TDSTEST_PASSWORD },
      },
      options,
    });
    conn.on('error', () => {}); // reported through the callbacks
    conn.connect((err) => (err ? reject(err) : resolve(conn)));
  });
}

// query runs sql as a SQL batch (batch true) or through sp_executesql
// (execSql) and resolves to the rows, each an array of values.
function query(conn, sql, batch) {
  return new Promise((resolve, reject) => {
    const rows = [];
    const req = new Request(sql, (err) => (err ? reject(err) : resolve(rows)));
    req.on('row', (cols) => rows.push(cols.map((c) => c.value)));
    if (batch) {
      conn.execSqlBatch(req);
    } else {
      conn.execSql(req);
    }
  });
}

function nextLine() {
  const rl = readline.createInterface({ input: process.stdin });
  return new Promise((resolve) => {
    rl.once('line', (line) => {
      rl.close();
      process.stdin.destroy(); // let the event loop end
      resolve(line);
    });
  });
}

async function main() {
  const r = {};
  const conn = await connect();
  r.select1 = (await query(conn, 'SELECT 1', true))[0][0];
  r.version = (await query(conn, 'SELECT @@VERSION', false))[0][0];
  r.rows = (await query(conn, 'SELECT * FROM tdstest.rows(3, 10)', false)).map((row) => row[0].toString('hex'));
  r.nrows = (await query(conn, 'SELECT * FROM tdstest.nrows(2, 10000)', true)).map((row) => row[0].slice(0, 5) + ':' + row[0].length);
  if (cfg.cancel) {
    const p = query(conn, "WAITFOR DELAY '00:10:00'", true).then(() => 'completed', (e) => e.code || e.message);
    out({ event: 'waitfor-sent' });
    await nextLine();
    conn.cancel();
    r.cancel = await p;
    r.afterCancel = (await query(conn, 'SELECT 2', true))[0][0];
  }
  await new Promise((resolve) => {
    conn.on('end', resolve);
    conn.close();
  });
  return r;
}

main().then(
  (results) => out({ ok: true, results }),
  (e) => out({ ok: false, error: String(e && e.message), code: e && e.code }),
);
