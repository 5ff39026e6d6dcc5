// node `ws` echo server for bench/load/peers.sh: the fastest setup the ws README documents. bufferutil is
// installed beside it (package.json), which ws loads by itself to mask and unmask; per-message deflate is off.
//
// usage: node ws_echo.mjs [PORT]   (0 = any free port; prints "ws_echo: listening on port N")
import { WebSocketServer } from 'ws';
import { createRequire } from 'node:module';

// Fail loudly rather than measure the pure-JavaScript masking path by accident.
createRequire(import.meta.url)('bufferutil');

const port = Number(process.argv[2] ?? 0);
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, maxPayload: 1 << 24 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => console.log(`ws_echo: listening on port ${wss.address().port}`));
