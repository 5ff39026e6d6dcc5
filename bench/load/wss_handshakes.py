#!/usr/bin/env python3
"""Full wss:// opening handshakes in a loop, for bench/load/tls_race.sh: each one is a new TCP connection, a full
TLS handshake (a new SSL context per process and no session offered: never a resumption), the WebSocket upgrade
request and its 101 response, then the socket closed (FIN, no close frame, no close_notify; the same for every
server).

    wss_handshakes.py PORT CA_FILE SECONDS [PROCESSES]

PROCESSES (default 4) blocking loops in separate processes keep the server busy while each waits for its round
trips. Prints one line: "handshakes N failures F seconds S". Exits 1 when no handshake succeeded.
"""
import multiprocessing
import os
import socket
import ssl
import sys
import time

REQUEST = (b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def loop(port, ca, deadline, results):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    done = failed = 0
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(REQUEST)
                    reply = b""
                    while b"\r\n\r\n" not in reply:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        reply += chunk
                    if reply.startswith(b"HTTP/1.1 101"):
                        done += 1
                    else:
                        failed += 1
        except OSError:
            failed += 1
    results.put((done, failed))


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    port, ca, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    processes = int(sys.argv[4]) if len(sys.argv) == 5 else 4
    results = multiprocessing.Queue()
    started = time.monotonic()
    workers = [multiprocessing.Process(target=loop, args=(port, ca, started + seconds, results))
               for _ in range(processes)]
    for w in workers:
        w.start()
    done = failed = 0
    for _ in workers:
        d, f = results.get(timeout=seconds + 30)
        done += d
        failed += f
    for w in workers:
        w.join()
    print("handshakes %d failures %d seconds %.3f" % (done, failed, time.monotonic() - started))
    sys.exit(0 if done > 0 else 1)


if __name__ == "__main__":
    main()
