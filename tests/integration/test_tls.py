"""The client checks over wss://, with a development CA made by tools/make-dev-cert.sh in a temporary directory
(verified by the certificate's IP:127.0.0.1 subjectAltName);
and abrupt disconnects over TLS (the server writes to connections the peer has reset)."""
import shutil
import socket

import ws_checks
from harness import (client_ssl_context, edgews, expect, expect_eq, frame, make_certs,
                     read_http_head, rst_close, run_checks, run_node, test_server, upgrade_request, wait_until)

CERTS = None


def certs():
    global CERTS
    if CERTS is None:
        CERTS = make_certs()
    return CERTS


def tls_server(binary_is_edgews=True):
    c = certs()
    args = ["--port", "0", "--tls-port", "0", "--tls-cert", c["cert"], "--tls-key", c["key"]]
    if binary_is_edgews:
        return edgews("--host", "127.0.0.1", "--log-level", "warn", *args)
    return test_server(*args)


def python_client_wss():
    with tls_server() as server:
        expect_eq(len(server.ports), 2, "ports printed (ws and wss)")
        url = f"wss://127.0.0.1:{server.ports[1]}/"
        context = client_ssl_context(certs()["ca"])
        for check in (ws_checks.echo, ws_checks.fragments, ws_checks.ping, ws_checks.close_codes):
            ws_checks.sync(check, url, context)()
        expect(server.alive(), "the server died")


def python_server_close_wss():
    with tls_server(binary_is_edgews=False) as server:
        ws_checks.sync(ws_checks.server_close, f"wss://127.0.0.1:{server.ports[1]}/",
                       client_ssl_context(certs()["ca"]))()


def node_client_wss():
    with tls_server() as server:
        rc, out = run_node("ws_client.mjs", [f"wss://127.0.0.1:{server.ports[1]}/", "--ca", certs()["ca"],
                                             "echo", "fragments", "ping", "close_codes"])
        print(out, end="")
        expect(rc == 0, f"node ws checks over wss:// failed (exit {rc})")


def node_server_close_wss():
    with tls_server(binary_is_edgews=False) as server:
        rc, out = run_node("ws_client.mjs", [f"wss://127.0.0.1:{server.ports[1]}/", "--ca", certs()["ca"],
                                             "server_close"])
        print(out, end="")
        expect(rc == 0, f"node ws checks over wss:// failed (exit {rc})")


def tls_resets_leave_server_running():
    with tls_server() as server:
        context = client_ssl_context(certs()["ca"])
        ws_checks.sync(ws_checks.ping, f"wss://127.0.0.1:{server.ports[1]}/", context)()
        baseline_fds = server.fd_count()
        for i in range(50):
            raw = socket.create_connection(("127.0.0.1", server.ports[1]), timeout=30)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s = context.wrap_socket(raw, server_hostname="localhost")
            s.sendall(upgrade_request(server.ports[1]))
            read_http_head(s)
            # Ask for a 1 MiB echo and reset at once: the server writes into a connection that is gone.
            s.sendall(frame(0x2, b"\x03" * (1 << 20)))
            rst_close(s)  # wrap_socket took over the descriptor: SO_LINGER 0 on the TLS socket
            if not server.alive():
                break
        expect(server.alive(), f"the server died after {i + 1} reset TLS connections "
                               f"(exit {server.wait(5)}: a signal if negative)")
        expect(wait_until(lambda: server.fd_count() <= baseline_fds, 30),
               f"{server.fd_count()} descriptors after the resets, {baseline_fds} before")
        ws_checks.sync(ws_checks.ping, f"wss://127.0.0.1:{server.ports[1]}/", context)()


def sigterm_closes_wss_clients_with_1001():
    """Graceful shutdown over TLS: every wss client gets 1001 after its last echo, and the server exits 0."""
    with tls_server() as server:
        ws_checks.sigterm_closes_clients_with_1001(server, f"wss://127.0.0.1:{server.ports[1]}/",
                                                   client_ssl_context(certs()["ca"]), clients=10)


if __name__ == "__main__":
    try:
        run_checks([python_client_wss, python_server_close_wss, node_client_wss, node_server_close_wss,
                    tls_resets_leave_server_running, sigterm_closes_wss_clients_with_1001])
    finally:
        if CERTS:
            shutil.rmtree(CERTS["dir"], ignore_errors=True)
