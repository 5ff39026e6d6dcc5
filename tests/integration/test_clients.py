"""Real clients over ws://: python3-websockets and node ws against `edgews serve` (echo) and the integration
server (server-initiated close). Sizes 0 .. 16 MiB, fragmented messages, ping/pong, close codes both ways."""
import ws_checks
from harness import expect, run_checks, run_node, serve, test_server


def python_client():
    with serve() as server:
        url = f"ws://127.0.0.1:{server.port}/"
        for check in (ws_checks.echo, ws_checks.fragments, ws_checks.ping, ws_checks.close_codes):
            ws_checks.sync(check, url)()
        expect(server.alive(), "the server died")


def python_server_close():
    with test_server("--port", "0") as server:
        ws_checks.sync(ws_checks.server_close, f"ws://127.0.0.1:{server.port}/")()


def node_client():
    with serve() as server:
        rc, out = run_node("ws_client.mjs", [f"ws://127.0.0.1:{server.port}/", "echo", "fragments", "ping",
                                             "close_codes"])
        print(out, end="")
        expect(rc == 0, f"node ws checks failed (exit {rc})")


def node_server_close():
    with test_server("--port", "0") as server:
        rc, out = run_node("ws_client.mjs", [f"ws://127.0.0.1:{server.port}/", "server_close"])
        print(out, end="")
        expect(rc == 0, f"node ws checks failed (exit {rc})")


if __name__ == "__main__":
    run_checks([python_client, python_server_close, node_client, node_server_close])
