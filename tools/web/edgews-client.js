// edgews-client.js: a small WebSocket client helper with no dependencies. Copy it into your project.
//
//   const client = new EdgewsClient(EdgewsClient.urlFromLocation("/"), { protocols: [] });
//   client.onmessage = (data) => console.log("server says", data);
//   client.onclose = (info) => console.log("closed", info.code, info.reason, "retry in", info.delayMs);
//   await client.connect();                 // resolves on open, rejects if this attempt fails
//   const reply = await client.request("hi"); // sends, then resolves with the next message (echo-style)
//
// Why: `new WebSocket(url)` followed at once by `socket.send()` throws, and a handshake that a strict client
// refuses (a duplicated header, a bad Accept) shows up only as a close with code 1006 and no reason. This helper
// waits for the open event before anything is sent, reports every close with its code and reason, and after a
// close it did not ask for (anything but code 1000) reconnects with exponential backoff and jitter, capped.
// Code 1012 (Service Restart: a server draining before a restart, which spreads these closes over its drain
// window) means "reconnect soon": the first step of the backoff, with its jitter, and not counted as a failure,
// so that the next refusal (an instance still draining answers 503) is retried as soon; the proxy sends the new
// connection to another instance, or the restarted server takes it.
//
// States: "idle" -> "connecting" -> "open" -> ("closing") -> "reconnecting" -> "connecting" ... or "closed".
// Works in browsers (ws:// or wss:// from the page's location) and in node or tests through options.WebSocket.
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.EdgewsClient = api.EdgewsClient;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const DEFAULTS = {
    protocols: undefined,       // subprotocols to offer (string or array)
    reconnect: true,            // reconnect after a close the client did not ask for
    initialDelayMs: 250,        // first retry after about this long
    maxDelayMs: 10000,          // the backoff never waits longer than this
    factor: 2,                  // each failed attempt multiplies the delay
    jitter: 0.5,                // this share of each delay is random, so restarted servers are not stampeded
    requestTimeoutMs: 10000,    // request() and receive() give up after this long (0 = never)
    inboxLimit: 1000,           // messages kept for receive() when there is no onmessage hook (oldest dropped)
    shouldReconnect: (info) => info.code !== 1000,  // 1000: the server ended the session on purpose
    WebSocket: undefined,       // the WebSocket class (default: the global one)
    setTimeout: undefined,      // timer functions and random source, replaceable for tests
    clearTimeout: undefined,
    random: Math.random,
    now: undefined,
  };

  // The delay before reconnect attempt number `attempt` (0 for the first): exponential, capped, with "equal
  // jitter": (1 - jitter) of it is fixed and the rest random, so clients spread out but never retry at once.
  function backoffDelay(attempt, options, random) {
    const o = Object.assign({}, DEFAULTS, options || {});
    const exponential = o.initialDelayMs * Math.pow(o.factor, Math.max(0, attempt));
    const base = Math.min(o.maxDelayMs, exponential);
    const r = (random || o.random)();
    return Math.round(base * (1 - o.jitter) + base * o.jitter * r);
  }

  // ws:// or wss:// to the page's own host, so that a page served over https talks over wss.
  function urlFromLocation(path, location) {
    const loc = location || globalThis.location;
    const scheme = loc.protocol === "https:" ? "wss://" : "ws://";
    return scheme + loc.host + (path === undefined ? "/" : path);
  }

  // Rejections carry the close code and reason (1006 with no reason is what browsers report for a refused or
  // dropped connection: `edgews doctor URL` tells why).
  class CloseError extends Error {
    constructor(message, code, reason) {
      super(message);
      this.name = "CloseError";
      this.code = code;
      this.reason = reason;
    }
  }

  class EdgewsClient {
    constructor(url, options) {
      this.url = url;
      this.options = Object.assign({}, DEFAULTS, options || {});
      this._WebSocket = this.options.WebSocket || globalThis.WebSocket;
      this._setTimeout = this.options.setTimeout || globalThis.setTimeout.bind(globalThis);
      this._clearTimeout = this.options.clearTimeout || globalThis.clearTimeout.bind(globalThis);
      this._now = this.options.now || (() => (globalThis.performance ? performance.now() : Date.now()));
      this._state = "idle";
      this._socket = null;
      this._attempt = 0;           // failed attempts since the last open (drives the backoff)
      this._timer = null;          // pending reconnect
      this._stopped = false;       // close() was called: no more reconnects
      this._connectWaiters = [];   // connect(): settled by the current attempt
      this._openWaiters = [];      // opened(): settled by the next open, whatever the attempt
      this._waiters = [];          // request()/receive(), oldest first
      this._inbox = [];
      this._closeWaiters = [];
      this.opens = 0;              // how many times a connection opened (1 + reconnects)
      this.lastClose = null;       // {code, reason, wasClean, willReconnect, delayMs}
      this.lastRttMs = null;       // round-trip time of the last request()
      this.protocol = "";          // the subprotocol the server chose
      this.extensions = "";        // the extensions the server accepted ("permessage-deflate; ..." or "")
      this.onopen = null;          // (client) after each open
      this.onmessage = null;       // (data, event) for messages that no request()/receive() claimed
      this.onclose = null;         // (info) after each close, before any reconnect
      this.onstatechange = null;   // (state, previous)
      this.onerror = null;         // (event) a connection failed; a close always follows
    }

    get state() {
      return this._state;
    }

    get bufferedAmount() {
      return this._socket ? this._socket.bufferedAmount : 0;
    }

    // Opens the connection. Resolves with the client once open; rejects with a CloseError if this attempt fails.
    // With reconnect on, a failed attempt is still retried in the background (see opened()).
    connect() {
      if (this._state === "open") return Promise.resolve(this);
      this._stopped = false;
      const promise = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
      if (this._state === "idle" || this._state === "closed" || this._state === "reconnecting") {
        this._cancelTimer();
        this._open();
      }
      return promise;
    }

    // Resolves at the next open (at once when open). Rejects only when close() ends the client.
    opened() {
      if (this._state === "open") return Promise.resolve(this);
      return new Promise((resolve, reject) => this._openWaiters.push({ resolve, reject }));
    }

    // Hands data (string, ArrayBuffer, typed array, Blob) to the socket. Rejects when not open.
    send(data) {
      if (this._state !== "open") {
        return Promise.reject(new Error("edgews-client: cannot send while " + this._state + "; await connect() or opened() first"));
      }
      try {
        this._socket.send(data);
      } catch (error) {
        return Promise.reject(error);
      }
      return Promise.resolve();
    }

    // Sends data and resolves with the next message (string or ArrayBuffer): for echo-style round trips.
    // Records the round-trip time in lastRttMs. Rejects on close or after options.requestTimeoutMs.
    request(data, options) {
      const started = this._now();
      const reply = this._wait(options);
      const sent = this.send(data);
      return sent.then(
        () =>
          reply.then((message) => {
            this.lastRttMs = this._now() - started;
            return message;
          }),
        (error) => {
          this._dropWaiter(reply);
          throw error;
        }
      );
    }

    // Resolves with the next message not already claimed (kept ones first).
    receive(options) {
      if (this._inbox.length > 0) return Promise.resolve(this._inbox.shift());
      return this._wait(options);
    }

    // Closes on purpose: no reconnect. Resolves with the close info once closed.
    close(code, reason) {
      this._stopped = true;
      this._cancelTimer();
      const failure = new CloseError("edgews-client: closed by the application", code || 1000, reason || "");
      this._settle(this._openWaiters, false, failure);
      if (!this._socket) {
        this._setState("closed");
        this._settle(this._connectWaiters, false, failure);
        return Promise.resolve(this.lastClose);
      }
      const done = new Promise((resolve) => this._closeWaiters.push(resolve));
      if (this._state !== "closing") {
        this._setState("closing");
        this._socket.close(code || 1000, reason || "");
      }
      return done;
    }

    // --- internals -------------------------------------------------------------------------------------------

    _setState(state) {
      const previous = this._state;
      if (previous === state) return;
      this._state = state;
      if (this.onstatechange) this.onstatechange(state, previous);
    }

    _cancelTimer() {
      if (this._timer !== null) {
        this._clearTimeout(this._timer);
        this._timer = null;
      }
    }

    _settle(list, ok, value) {
      const waiters = list.splice(0, list.length);
      for (const w of waiters) (ok ? w.resolve : w.reject)(value);
    }

    _wait(options) {
      const timeoutMs = options && options.timeoutMs !== undefined ? options.timeoutMs : this.options.requestTimeoutMs;
      let waiter;
      const promise = new Promise((resolve, reject) => {
        waiter = { resolve, reject, timer: null };
        if (timeoutMs > 0) {
          waiter.timer = this._setTimeout(() => {
            this._removeWaiter(waiter);
            reject(new Error("edgews-client: no message within " + timeoutMs + " ms"));
          }, timeoutMs);
        }
        this._waiters.push(waiter);
      });
      promise._waiter = waiter;
      return promise;
    }

    _removeWaiter(waiter) {
      const i = this._waiters.indexOf(waiter);
      if (i >= 0) this._waiters.splice(i, 1);
      if (waiter.timer !== null) this._clearTimeout(waiter.timer);
    }

    _dropWaiter(promise) {
      if (promise._waiter) this._removeWaiter(promise._waiter);
      promise.catch(() => {});
    }

    _open() {
      this._setState("connecting");
      let socket;
      try {
        socket = new this._WebSocket(this.url, this.options.protocols);
      } catch (error) {
        // A malformed URL throws synchronously: no retry can help.
        this._setState("closed");
        this._settle(this._connectWaiters, false, error);
        return;
      }
      socket.binaryType = "arraybuffer";
      this._socket = socket;
      socket.onopen = () => {
        if (socket !== this._socket) return;
        this._attempt = 0;
        this.opens += 1;
        this.protocol = socket.protocol || "";
        this.extensions = socket.extensions || "";
        this._setState("open");
        this._settle(this._connectWaiters, true, this);
        this._settle(this._openWaiters, true, this);
        if (this.onopen) this.onopen(this);
      };
      socket.onmessage = (event) => {
        if (socket !== this._socket) return;
        const data = event.data;
        if (this._waiters.length > 0) {
          const waiter = this._waiters.shift();
          if (waiter.timer !== null) this._clearTimeout(waiter.timer);
          waiter.resolve(data);
        } else if (this.onmessage) {
          this.onmessage(data, event);
        } else {
          this._inbox.push(data);
          if (this._inbox.length > this.options.inboxLimit) this._inbox.shift();
        }
      };
      socket.onerror = (event) => {
        if (socket === this._socket && this.onerror) this.onerror(event);
      };
      socket.onclose = (event) => this._closed(socket, event);
    }

    _closed(socket, event) {
      if (socket !== this._socket) return;
      this._socket = null;
      const info = {
        code: event.code,
        reason: event.reason || "",
        wasClean: !!event.wasClean,
        willReconnect: false,
        delayMs: null,
      };
      if (!this._stopped && this.options.reconnect && this.options.shouldReconnect(info)) {
        info.willReconnect = true;
        // 1012 (Service Restart) is the server's plan, not a failure: the first step of the backoff, and the
        // attempt is not counted, so that one refusal by an instance still draining is retried as soon.
        const restart = info.code === 1012;
        if (restart) this._attempt = 0;
        info.delayMs = backoffDelay(this._attempt, this.options, this.options.random);
        if (!restart) this._attempt += 1;
      }
      this.lastClose = info;
      const error = new CloseError(
        "edgews-client: connection closed (code " + info.code + (info.reason ? ", " + info.reason : "") + ")",
        info.code,
        info.reason
      );
      this._settle(this._connectWaiters, false, error);
      const waiters = this._waiters.splice(0, this._waiters.length);
      for (const w of waiters) {
        if (w.timer !== null) this._clearTimeout(w.timer);
        w.reject(error);
      }
      if (info.willReconnect) {
        this._setState("reconnecting");
        this._timer = this._setTimeout(() => {
          this._timer = null;
          this._open();
        }, info.delayMs);
      } else {
        this._setState("closed");
      }
      if (this.onclose) this.onclose(info);
      const closeWaiters = this._closeWaiters.splice(0, this._closeWaiters.length);
      for (const resolve of closeWaiters) resolve(info);
    }
  }

  EdgewsClient.backoffDelay = backoffDelay;
  EdgewsClient.urlFromLocation = urlFromLocation;
  EdgewsClient.CloseError = CloseError;
  return { EdgewsClient, CloseError, backoffDelay, urlFromLocation };
});
