// edgews-client.js: a small WebSocket client helper (asynchronous open, reconnect with backoff). See README.
