// node ws client for the permessage-deflate round trips: connects with compression on (options from argv[3],
// ws' perMessageDeflate names), sends JSON, text and binary messages three times over, checks each echo and
// prints the negotiated extension. Exit 0 only when every echo matched.
const WebSocket = require('ws');

const url = process.argv[2];
const options = Object.assign({ threshold: 0 }, JSON.parse(process.argv[3] || '{}'));
const timer = setTimeout(() => { console.log('timeout'); process.exit(1); }, 20000);

const item = { id: 1, name: 'widget', price: 12.5, tags: ['a', 'b'] };
const big = JSON.stringify({ type: 'update', items: Array.from({ length: 80 }, (_, i) => ({ ...item, id: i })) });
const base = [
  'hi',
  JSON.stringify({ type: 'tick', items: [item] }).padEnd(200, ' '),
  big.slice(0, 4096),
  Buffer.concat([Buffer.from(big.slice(0, 3000)), Buffer.alloc(300, 0xff)]),
  '\u00e9t\u00e9 \u{1F600}'.repeat(50),
];
const messages = [...base, ...base, ...base];

const ws = new WebSocket(url, { perMessageDeflate: options });
let i = 0;
ws.on('open', () => {
  console.log('extensions: ' + ws.extensions);
  if (!ws.extensions.startsWith('permessage-deflate')) { console.log('not negotiated'); process.exit(1); }
  ws.send(messages[0], { compress: true });
});
ws.on('message', (data, isBinary) => {
  const expected = messages[i];
  const same = Buffer.isBuffer(expected) ? isBinary && Buffer.compare(data, expected) === 0
                                         : !isBinary && data.toString() === expected;
  if (!same) { console.log('mismatch at ' + i); process.exit(1); }
  if (++i === messages.length) { clearTimeout(timer); ws.close(1000); return; }
  ws.send(messages[i], { compress: true });
});
ws.on('close', (code) => { if (i !== messages.length) { console.log('closed early ' + code); process.exit(1); } });
ws.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
