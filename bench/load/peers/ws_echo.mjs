// node `ws` echo server for bench/load/peers.sh: the fastest setup the ws README documents. bufferutil is
// installed beside it (package.json), which ws loads by itself to mask and unmask; per-message deflate is off.
// TLS mode (scenario (e)): the same WebSocketServer on an https server (the README's "external HTTP/S server"),
// TLS 1.3 only, node's defaults otherwise.
//
// usage: node ws_echo.mjs [PORT] [--tls CERT KEY]   (0 = any free port; prints "ws_echo: listening on port N")
import { WebSocketServer } from 'ws';
import { createServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

// Fail loudly rather than measure the pure-JavaScript masking path by accident.
createRequire(import.meta.url)('bufferutil');

const port = Number(process.argv[2] ?? 0);
const options = { perMessageDeflate: false, maxPayload: 1 << 24 };
let wss, listening;
if (process.argv[3] === '--tls') {
  const server = createServer({
    cert: readFileSync(process.argv[4]), key: readFileSync(process.argv[5]), minVersion: 'TLSv1.3',
  });
  wss = new WebSocketServer({ server, ...options });
  listening = server;
  server.listen(port, '127.0.0.1');
} else {
  wss = new WebSocketServer({ host: '127.0.0.1', port, ...options });
  listening = wss;
}
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
listening.on('listening', () => console.log(`ws_echo: listening on port ${listening.address().port}`));
