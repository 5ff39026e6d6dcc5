"""Plain HTTP on the WebSocket port, and the handshake guarantee: the 101 is canonical, byte for byte, and
application headers from --header appear once without disturbing it."""
import subprocess

from harness import (EDGEWS_BIN, accept_for, connect, expect, expect_eq, read_http_head, read_http_response,
                     run_checks, serve, upgrade_request)


def healthz_answers_ok():
    with serve() as server:
        s = connect(server.port)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, headers, body = read_http_response(s)
        s.close()
        expect_eq(status, 200, "GET /healthz status")
        expect_eq(body.strip(), b"ok", "GET /healthz body")
        lengths = [v for k, v in headers if k.lower() == "content-length"]
        expect_eq(lengths, [str(len(body))], "Content-Length of /healthz")


def bad_version_gets_426():
    with serve() as server:
        for version in ("8", "14", "abc"):
            s = connect(server.port)
            s.sendall(upgrade_request(server.port, version=version))
            status, headers, _ = read_http_response(s)
            s.close()
            expect_eq(status, 426, f"status for Sec-WebSocket-Version: {version}")
            versions = [v for k, v in headers if k.lower() == "sec-websocket-version"]
            expect_eq(versions, ["13"], "Sec-WebSocket-Version headers of the 426 (RFC 6455 4.4)")


def canonical_101(port, key, extra_lines=()):
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_for(key)}\r\n" + "".join(line + "\r\n" for line in extra_lines) +
            "\r\n").encode()


def switching_protocols_is_canonical():
    with serve() as server:
        keys = ["dGhlIHNhbXBsZSBub25jZQ==", "x3JJHMbDL1EzLkh9GBhXDw==", "AQIDBAUGBwgJCgsMDQ4PEA=="]
        variants = [
            [],
            ["Origin: http://example.com", "User-Agent: integration"],
            # Header spellings real clients use: Firefox's Connection list, any case.
            ["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"],
        ]
        for key in keys:
            for extra in variants:
                s = connect(server.port)
                request = upgrade_request(server.port, key=key, extra=extra)
                if extra and extra[0].startswith("Sec-WebSocket-Extensions"):
                    request = request.replace(b"Connection: Upgrade", b"connection: keep-alive, Upgrade")
                    request = request.replace(b"Upgrade: websocket", b"upgrade: WebSocket")
                s.sendall(request)
                head, _ = read_http_head(s)
                s.close()
                expect_eq(head, canonical_101(server.port, key), f"101 for key {key} with {extra}")


def header_option_refuses_connection():
    for line in ("Connection: upgrade", "connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Accept: x"):
        r = subprocess.run([EDGEWS_BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--header", line],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        message = r.stderr.decode(errors="replace")
        expect(r.returncode != 0, f"edgews serve --header '{line}' started (exit {r.returncode}); it must refuse")
        name = line.split(":")[0]
        expect(name.lower() in message.lower(), f"the error for '{line}' does not name the header: {message!r}")
        expect("edgews" in message and ("itself" in message or "writes" in message or "owns" in message),
               f"the error for '{line}' does not say edgews writes that header itself: {message!r}")


def header_option_adds_application_header():
    with serve("--header", "Access-Control-Allow-Origin: *") as server:
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        s = connect(server.port)
        s.sendall(upgrade_request(server.port, key=key, extra=["Origin: https://app.example"]))
        head, _ = read_http_head(s)
        s.close()
        lines = head.decode("latin-1").split("\r\n")
        names = [line.split(":")[0].lower() for line in lines[1:] if line]
        expect_eq(names.count("access-control-allow-origin"), 1, f"Access-Control-Allow-Origin count in {head!r}")
        expect_eq(names.count("connection"), 1, f"Connection count in {head!r}")
        expect("Connection: Upgrade" in lines, f"no 'Connection: Upgrade' line in {head!r}")
        expect_eq(head, canonical_101(server.port, key, ["Access-Control-Allow-Origin: *"]), "the whole 101")


if __name__ == "__main__":
    run_checks([healthz_answers_ok, bad_version_gets_426, switching_protocols_is_canonical,
                header_option_refuses_connection, header_option_adds_application_header])
