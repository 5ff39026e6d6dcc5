// Unit tests of tools/web/edgews-client.js under node's test runner, with a scripted WebSocket and manual timers
// (no network, no real time): open and failure, backoff with jitter and its cap, reconnect rules, request/receive.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { EdgewsClient, CloseError, backoffDelay, urlFromLocation } = require(
  path.join(__dirname, "..", "..", "tools", "web", "edgews-client.js"));

// A WebSocket double: the test decides when it opens, what arrives, and how it closes.
class FakeSocket {
  static instances = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.readyState = 0;
    this.bufferedAmount = 0;
    this.protocol = "";
    FakeSocket.instances.push(this);
  }
  send(data) {
    if (this.readyState !== 1) throw new Error("InvalidStateError");
    this.sent.push(data);
  }
  close(code, reason) {
    this.closeCalled = { code, reason };
    this.readyState = 2;
  }
  // test side
  open() { this.readyState = 1; this.onopen({}); }
  message(data) { this.onmessage({ data }); }
  closed(code, reason = "", wasClean = code !== 1006) {
    this.readyState = 3;
    if (code === 1006 && this.onerror) this.onerror({});
    this.onclose({ code, reason, wasClean });
  }
}

// Manual timers: run(ms) advances the clock and fires what is due.
function clock() {
  let now = 0, next = 1;
  const timers = new Map();
  return {
    setTimeout(fn, ms) { const id = next++; timers.set(id, { at: now + ms, fn, ms }); return id; },
    clearTimeout(id) { timers.delete(id); },
    now: () => now,
    pending: () => [...timers.values()].map((t) => t.ms),
    run(ms) {
      now += ms;
      for (const [id, t] of [...timers]) {
        if (t.at <= now) { timers.delete(id); t.fn(); }
      }
    },
  };
}

function make(options = {}) {
  FakeSocket.instances = [];
  const c = clock();
  const client = new EdgewsClient("ws://example.test/", Object.assign({
    WebSocket: FakeSocket, setTimeout: c.setTimeout, clearTimeout: c.clearTimeout, now: c.now, random: () => 0.5,
  }, options));
  return { client, c, last: () => FakeSocket.instances[FakeSocket.instances.length - 1] };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

test("connect resolves on open and not before", async () => {
  const { client, last } = make();
  let opened = false;
  const p = client.connect().then(() => { opened = true; });
  await flush();
  assert.equal(opened, false);
  assert.equal(client.state, "connecting");
  await assert.rejects(client.send("early"), /cannot send while connecting/);
  last().open();
  await p;
  assert.equal(opened, true);
  assert.equal(client.state, "open");
  assert.equal(client.opens, 1);
  assert.equal(last().binaryType, "arraybuffer");
});

test("connect rejects with the close code when the handshake fails, and retries in the background", async () => {
  const { client, c, last } = make();
  const p = client.connect();
  last().closed(1006);
  await assert.rejects(p, (e) => e instanceof CloseError && e.code === 1006);
  assert.equal(client.state, "reconnecting");
  assert.deepEqual(client.lastClose, { code: 1006, reason: "", wasClean: false, willReconnect: true, delayMs: 188 });
  const reopened = client.opened();
  c.run(188);
  assert.equal(FakeSocket.instances.length, 2);
  last().open();
  assert.equal(await reopened, client);
});

test("backoff grows exponentially, is capped, and jitter stays within its share", () => {
  const o = { initialDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: 0.5 };
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((a) => backoffDelay(a, o, () => 1)), [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((a) => backoffDelay(a, o, () => 0)), [50, 100, 200, 400, 500, 500]);
  for (let i = 0; i < 200; ++i) {
    const d = backoffDelay(3, o);
    assert.ok(d >= 400 && d <= 800, d);
  }
  assert.equal(backoffDelay(2, Object.assign({}, o, { jitter: 0 }), () => 0.9), 400);
});

test("successive failures back off and an open resets the backoff", async () => {
  const { client, c, last } = make({ initialDelayMs: 100, maxDelayMs: 350, random: () => 1 });
  client.connect().catch(() => {});
  const delays = [];
  for (let i = 0; i < 4; ++i) {
    last().closed(1006);
    delays.push(client.lastClose.delayMs);
    c.run(client.lastClose.delayMs);
  }
  assert.deepEqual(delays, [100, 200, 350, 350]);
  last().open();
  last().closed(1001, "going away");
  assert.equal(client.lastClose.delayMs, 100);
  assert.equal(client.lastClose.reason, "going away");
});

test("reconnects after a server-initiated close with an application code, not after 1000", async () => {
  const { client, c, last } = make();
  client.connect();
  last().open();
  last().closed(4000, "bye from the server");
  assert.equal(client.state, "reconnecting");
  assert.equal(client.lastClose.code, 4000);
  c.run(1000);
  last().open();
  assert.equal(client.opens, 2);
  last().closed(1000, "done");
  assert.equal(client.state, "closed");
  assert.deepEqual(c.pending(), []);
});

test("1012 (Service Restart) reconnects soon: the first backoff step with its jitter, not counted as a failure", async () => {
  const seen = [];
  for (const r of [0, 0.5, 1]) {
    const { client, c, last } = make({ initialDelayMs: 200, maxDelayMs: 5000, jitter: 0.5, random: () => r });
    client.connect().catch(() => {});
    // Failures first: the backoff has grown to its third step.
    last().closed(1006);
    c.run(client.lastClose.delayMs);
    last().closed(1006);
    c.run(client.lastClose.delayMs);
    last().closed(1006);
    assert.equal(client.lastClose.delayMs, Math.round(800 * 0.5 + 800 * 0.5 * r));
    c.run(client.lastClose.delayMs);
    last().open();
    last().closed(1012, "server restarting");
    assert.equal(client.state, "reconnecting");
    assert.equal(client.lastClose.willReconnect, true);
    seen.push(client.lastClose.delayMs);
    const before = FakeSocket.instances.length;
    c.run(client.lastClose.delayMs);
    assert.equal(FakeSocket.instances.length, before + 1, "a new connection after the delay");
    // A refused attempt (the draining server's 503 shows as 1006) is retried as soon: the 1012 was no failure.
    last().closed(1006);
    assert.equal(client.lastClose.delayMs, Math.round(200 * 0.5 + 200 * 0.5 * r));
    c.run(client.lastClose.delayMs);
    // Then the usual backoff.
    last().closed(1006);
    assert.equal(client.lastClose.delayMs, Math.round(400 * 0.5 + 400 * 0.5 * r));
    // Any other close of an open connection counts: 1011 then a refusal backs off.
    c.run(client.lastClose.delayMs);
    last().open();
    last().closed(1011, "internal error");
    c.run(client.lastClose.delayMs);
    last().closed(1006);
    assert.equal(client.lastClose.delayMs, Math.round(400 * 0.5 + 400 * 0.5 * r));
  }
  // 100..200 ms: jitter spreads the clients that one server tick closed together.
  assert.deepEqual(seen, [100, 150, 200]);
});

test("close() stops reconnecting and resolves with the close info", async () => {
  const { client, c, last } = make();
  client.connect();
  last().open();
  const done = client.close(1000, "leaving");
  assert.equal(client.state, "closing");
  assert.deepEqual(last().closeCalled, { code: 1000, reason: "leaving" });
  last().closed(1006);  // even an unclean end does not reconnect after close()
  const info = await done;
  assert.equal(info.willReconnect, false);
  assert.equal(client.state, "closed");
  c.run(100000);
  assert.equal(FakeSocket.instances.length, 1);
});

test("close() while waiting to reconnect cancels the retry", () => {
  const { client, c } = make();
  client.connect().catch(() => {});
  FakeSocket.instances[0].closed(1006);
  assert.equal(c.pending().length, 1);
  client.close();
  assert.deepEqual(c.pending(), []);
  assert.equal(client.state, "closed");
});

test("request resolves with replies in order and records the round trip", async () => {
  const { client, c, last } = make();
  client.connect();
  last().open();
  const a = client.request("a");
  const b = client.request(new Uint8Array([1, 2]).buffer);
  await flush();
  assert.deepEqual(last().sent.map((x) => (typeof x === "string" ? x : x.byteLength)), ["a", 2]);
  c.run(7);
  last().message("A");
  last().message(new Uint8Array([2, 1]).buffer);
  assert.equal(await a, "A");
  assert.deepEqual([...new Uint8Array(await b)], [2, 1]);
  assert.equal(client.lastRttMs, 7);
});

test("pending requests reject with the close code when the connection drops", async () => {
  const { client, last } = make();
  client.connect();
  last().open();
  const r = client.request("x");
  await flush();
  last().closed(1011, "internal");
  await assert.rejects(r, (e) => e.code === 1011 && e.reason === "internal");
});

test("request times out and a late reply goes to onmessage", async () => {
  const { client, c, last } = make({ requestTimeoutMs: 50 });
  const seen = [];
  client.onmessage = (d) => seen.push(d);
  client.connect();
  last().open();
  const r = client.request("x");
  await flush();
  c.run(50);
  await assert.rejects(r, /no message within 50 ms/);
  last().message("late");
  assert.deepEqual(seen, ["late"]);
});

test("unclaimed messages go to onmessage, or wait in the inbox for receive()", async () => {
  const { client, last } = make({ inboxLimit: 2 });
  client.connect();
  last().open();
  last().message("1");
  last().message("2");
  last().message("3");
  assert.equal(await client.receive(), "2");  // the oldest was dropped at the limit
  assert.equal(await client.receive(), "3");
  const next = client.receive();
  last().message("4");
  assert.equal(await next, "4");
});

test("urlFromLocation follows the page's scheme", () => {
  assert.equal(urlFromLocation("/", { protocol: "https:", host: "example.test:8443" }), "wss://example.test:8443/");
  assert.equal(urlFromLocation("/chat", { protocol: "http:", host: "127.0.0.1:8080" }), "ws://127.0.0.1:8080/chat");
});

test("subprotocols are offered and the chosen one is reported", () => {
  const { client, last } = make({ protocols: ["chat", "v2"] });
  client.connect();
  assert.deepEqual(last().protocols, ["chat", "v2"]);
  last().protocol = "v2";
  last().open();
  assert.equal(client.protocol, "v2");
});

test("the negotiated extensions are reported per connection", () => {
  const { client, c, last } = make();
  client.connect().catch(() => {});
  assert.equal(client.extensions, "");
  last().extensions = "permessage-deflate; client_max_window_bits=15";
  last().open();
  assert.equal(client.extensions, "permessage-deflate; client_max_window_bits=15");
  // The next connection (after a drop) may be declined compression: its own value replaces the old one.
  last().closed(1006);
  c.run(client.lastClose.delayMs);
  last().extensions = "";
  last().open();
  assert.equal(client.opens, 2);
  assert.equal(client.extensions, "");
});
