// The node `ws` client side of the edgews integration tests. tests/integration/test_node_client.py and
// test_tls.py start a server and run this with the checks to perform:
//
//   node ws_client.mjs URL [--ca FILE] [--clients N] [--messages M] CHECK...
//
// CHECKs: echo, fragments, ping, close_codes, server_close (needs the integration server), concurrent.
// Every check prints PASS/FAIL; the last line is "N passed, N failed"; the exit code is 0 only if all passed.
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

const args = process.argv.slice(2);
const url = args.shift();
const options = { clients: 1000, messages: 5, ca: null };
const checks = [];
while (args.length) {
  const a = args.shift();
  if (a === '--ca') options.ca = readFileSync(args.shift());
  else if (a === '--clients') options.clients = Number(args.shift());
  else if (a === '--messages') options.messages = Number(args.shift());
  else checks.push(a);
}

const TIMEOUT_MS = 60000;  // per step; generous for a loaded 2-core machine
const SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];

function fail(message) { throw new Error(message); }

function withTimeout(promise, what, ms = TIMEOUT_MS) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); }),
  ]);
}

// A client whose incoming messages and close are awaited in order.
class Client {
  constructor(ws) {
    this.ws = ws;
    this.inbox = [];
    this.waiters = [];
    this.closed = null;
    this.closeWaiters = [];
    ws.on('message', (data, isBinary) => {
      const m = { data, isBinary };
      const w = this.waiters.shift();
      if (w) w.resolve(m); else this.inbox.push(m);
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const w of this.waiters) w.reject(new Error(`closed (${code}) while waiting for a message`));
      this.waiters = [];
      for (const w of this.closeWaiters) w(this.closed);
    });
    ws.on('error', (e) => { this.error = e; });
  }

  static open(extra = {}) {
    const ws = new WebSocket(url, { maxPayload: 64 << 20, ca: options.ca ?? undefined, ...extra });
    const client = new Client(ws);
    return withTimeout(new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
      ws.once('unexpected-response', (_, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    }), `open ${url}`);
  }

  receive() {
    if (this.inbox.length) return Promise.resolve(this.inbox.shift());
    if (this.closed) return Promise.reject(new Error(`closed (${this.closed.code})`));
    return withTimeout(new Promise((resolve, reject) => this.waiters.push({ resolve, reject })), 'a message');
  }

  send(data, opts = {}) {
    return new Promise((resolve, reject) => this.ws.send(data, opts, (e) => (e ? reject(e) : resolve())));
  }

  whenClosed() {
    if (this.closed) return Promise.resolve(this.closed);
    return withTimeout(new Promise((resolve) => this.closeWaiters.push(resolve)), 'the close');
  }

  async close(code, reason) {
    this.ws.close(code, reason);
    return this.whenClosed();
  }
}

function payloadOf(size, text) {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = text ? 0x20 + (i * 7) % 95 : (i * 31 + (i >> 8)) & 0xff;
  return b;
}

function expectSame(got, want, isBinary, what) {
  if (got.isBinary !== isBinary) fail(`${what}: binary=${got.isBinary}, expected ${isBinary}`);
  const data = Buffer.isBuffer(got.data) ? got.data : Buffer.concat(got.data);
  if (data.length !== want.length) fail(`${what}: ${data.length} bytes back, expected ${want.length}`);
  if (!data.equals(want)) fail(`${what}: the echo differs from what was sent`);
}

const CHECKS = {
  async echo() {
    const c = await Client.open();
    for (const text of [true, false]) {
      for (const size of SIZES) {
        const want = payloadOf(size, text);
        await c.send(text ? want.toString('latin1') : want, { binary: !text });
        expectSame(await c.receive(), want, !text, `${text ? 'text' : 'binary'} ${size}`);
      }
    }
    // Multi-byte UTF-8 text survives unchanged.
    const unicode = 'héllo wörld ✓ 𝄞 '.repeat(5000);
    await c.send(unicode);
    expectSame(await c.receive(), Buffer.from(unicode), false, 'unicode text');
    await c.close(1000);
  },

  async fragments() {
    const c = await Client.open();
    // Binary in 5 fragments of different sizes (one empty), delivered as one message.
    const parts = [payloadOf(1, false), payloadOf(125, false), Buffer.alloc(0), payloadOf(70000, false),
      payloadOf(3, false)];
    for (let i = 0; i < parts.length; i++) await c.send(parts[i], { binary: true, fin: i === parts.length - 1 });
    expectSame(await c.receive(), Buffer.concat(parts), true, 'fragmented binary');
    // Text split inside multi-byte characters: only the whole message has to be valid UTF-8 (RFC 6455 5.6).
    const text = Buffer.from('αβγ ✓ 𝄞 end');
    const cuts = [0, 1, 3, 9, 12, text.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      await c.send(text.subarray(cuts[i], cuts[i + 1]), { binary: false, fin: i + 2 === cuts.length });
    }
    expectSame(await c.receive(), text, false, 'fragmented text split inside characters');
    // A ping between fragments is answered and does not disturb the message.
    await c.send(Buffer.from('first-'), { binary: false, fin: false });
    const pong = new Promise((resolve) => c.ws.once('pong', resolve));
    c.ws.ping(Buffer.from('mid'));
    await c.send(Buffer.from('second'), { binary: false, fin: true });
    const got = await withTimeout(pong, 'pong between fragments');
    if (got.toString() !== 'mid') fail(`pong payload ${JSON.stringify(got.toString())}, expected "mid"`);
    expectSame(await c.receive(), Buffer.from('first-second'), false, 'fragments around a ping');
    await c.close(1000);
  },

  async ping() {
    const c = await Client.open();
    for (const payload of [Buffer.alloc(0), Buffer.from('edgews'), payloadOf(125, false)]) {
      const pong = new Promise((resolve) => c.ws.once('pong', resolve));
      c.ws.ping(payload);
      const got = await withTimeout(pong, 'pong');
      if (!got.equals(payload)) fail(`pong payload (${got.length} bytes) differs from the ping's (${payload.length})`);
    }
    await c.send('still open');
    expectSame(await c.receive(), Buffer.from('still open'), false, 'echo after pings');
    await c.close(1000);
  },

  async close_codes() {
    for (const [code, reason] of [[1000, ''], [4001, 'custom reason'], [3000, '']]) {
      const c = await Client.open();
      await c.send('x');
      await c.receive();
      const closed = await c.close(code, reason);
      if (closed.code !== code) fail(`client closed with ${code}; the server answered ${closed.code}`);
    }
  },

  async server_close() {
    for (const [code, reason] of [[4002, 'server says bye'], [1000, 'done'], [1008, 'policy']]) {
      const c = await Client.open();
      await c.send(`close ${code} ${reason}`);
      const closed = await c.whenClosed();
      if (closed.code !== code || closed.reason !== reason) {
        fail(`expected close ${code} "${reason}", got ${closed.code} "${closed.reason}"`);
      }
    }
  },

  async concurrent() {
    const started = Date.now();
    const clients = await Promise.all(Array.from({ length: options.clients }, () => Client.open()));
    const opened = Date.now();
    await Promise.all(clients.map(async (c, i) => {
      for (let m = 0; m < options.messages; m++) {
        const text = `client ${i} message ${m}`;
        await c.send(text);
        const got = await c.receive();
        if (got.data.toString() !== text) fail(`client ${i}: echo "${got.data}" differs from "${text}"`);
      }
    }));
    await Promise.all(clients.map((c) => c.close(1000)));
    console.log(`  ${options.clients} clients opened in ${opened - started} ms, ` +
      `${options.clients * options.messages} echoes and closes in ${Date.now() - opened} ms`);
  },
};

let passed = 0;
let failed = 0;
for (const name of checks) {
  const check = CHECKS[name];
  const t0 = Date.now();
  try {
    if (!check) fail(`unknown check ${name}`);
    await check();
    passed++;
    console.log(`PASS node_${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  } catch (e) {
    failed++;
    console.log(`FAIL node_${name} (${((Date.now() - t0) / 1000).toFixed(1)}s): ${e.message}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
