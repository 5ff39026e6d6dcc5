// A node `ws` echo server for edgews::Client's tests (tests/core/client_peers_test.cpp):
//   node ws_echo_server.mjs [--deflate]
// Listens on a free loopback port and prints "listening PORT". Echoes every message, except these commands:
//   "frag"        answers "abcdef" as three fragments
//   "ping"        pings with payload "p", then sends "pong:<payload>" once the pong arrives
//   "ext"         sends the negotiated extensions ("permessage-deflate" or "")
//   "close:CODE"  closes with CODE and the reason "bye"
//   "last"        sends the close code of the last client that closed ("none" before any)
import { WebSocketServer } from 'ws';

const deflate = process.argv.includes('--deflate');
let lastClose = 'none';
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: deflate ? { threshold: 0 } : false,
});
wss.on('listening', () => console.log(`listening ${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('close', (code) => { lastClose = String(code); });
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? null : data.toString();
    if (text === 'frag') {
      ws.send('ab', { fin: false });
      ws.send('cd', { fin: false });
      ws.send('ef', { fin: true });
    } else if (text === 'ping') {
      ws.once('pong', (payload) => ws.send(`pong:${payload.toString()}`));
      ws.ping('p');
    } else if (text === 'ext') {
      // A string of the accepted extension names on the server side (ws 8).
      ws.send(String(ws.extensions || '').split(';')[0]);
    } else if (text !== null && text.startsWith('close:')) {
      ws.close(Number(text.slice(6)), 'bye');
    } else if (text === 'last') {
      ws.send(lastClose);
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
// Bounded: a test that forgets the server does not leave it running.
setTimeout(() => process.exit(0), 120000).unref();
