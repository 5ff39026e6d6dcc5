"""Real browsers against `edgews serve`: headless Chromium and WebKit (Safari's engine) load the test page over
ws:// and wss:// (the development certificate accepted), reach OPEN, echo text and binary through the page's
buttons, receive a server-initiated close and show its code and reason, and reconnect by themselves after the
server is restarted on the same ports. The origin story runs as a regression test. With `edgews serve --deflate`
(RFC 7692) both negotiate permessage-deflate (the page shows socket.extensions) and echo compressible messages;
with WebKit's User-Agent declined (--deflate-decline-ua) WebKit opens uncompressed, the 101 carrying no
Sec-WebSocket-Extensions header at all. Screenshots go to $EDGEWS_ARTIFACTS/browser/.

  browser_test.py chromium echo|origin_story|deflate
  browser_test.py webkit echo|origin_story|deflate|deflate_declined
"""

import base64
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from webdriver import DRIVERS  # noqa: E402
from harness import make_certs, serve, temp_dir  # noqa: E402

ARTIFACTS = os.path.join(os.environ.get("EDGEWS_ARTIFACTS", os.path.join(os.getcwd(), "artifacts")), "browser")


def step(message):
    print("[%7.2f] %s" % (time.monotonic() - STARTED, message), flush=True)


STARTED = time.monotonic()


def screenshot(session, name):
    """Saves a screenshot; WebKit under Xvfb may hand back a blank frame until the page has painted, so a
    suspiciously small PNG is taken again for a few seconds."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name + ".png")
    deadline = time.monotonic() + 5
    while True:
        session.screenshot(path)
        if os.path.getsize(path) > 12000 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    step("screenshot %s (%d bytes)" % (path, os.path.getsize(path)))
    return path


def echo_both(session, label):
    text = "echo %s %d \u2713" % (label, int(time.time() * 1000) % 100000)
    session.type("#text", text)
    session.click("#send-text")
    session.wait_for("the text echo", lambda d: d.get("textEcho") == text)
    session.click("#send-binary")
    session.wait_for("the binary echo", lambda d: d.get("binaryEcho") == "1024 bytes, identical")
    rtt = session.dataset().get("rtt", "")
    assert rtt.endswith(" ms"), rtt
    step("echoed text and 1024 binary bytes (%s)" % label)


def load_and_open(session, url):
    session.navigate(url)
    data = session.wait_for("state open at " + url, lambda d: d.get("state") == "open")
    step("open at %s" % url)
    return data


def scenario_echo(browser, session, server):
    for scheme, port in (("ws", server.port), ("wss", server.tls_port)):
        http = "http" if scheme == "ws" else "https"
        # Short backoff so that the restart is noticed quickly; the cap keeps it bounded.
        url = "%s://localhost:%d/?initialDelay=200&maxDelay=1000" % (http, port)
        load_and_open(session, url)
        assert session.execute("return edgewsClient.url") == "%s://localhost:%d/" % (scheme, port)
        echo_both(session, scheme)

        # A server-initiated close: the page shows its code and reason, then reconnects by itself (4000 is
        # not a normal end).
        opens = int(session.dataset()["opens"])
        session.type("#close-reason-input", "bye over " + scheme)
        session.click("#ask-close")
        session.wait_for("close 4000 shown", lambda d: d.get("closeCode") == "4000" and
                         d.get("closeReason") == "bye over " + scheme)
        shown = session.execute("return document.getElementById('close-code').textContent + ' ' + "
                                "document.getElementById('close-reason').textContent")
        assert shown == "4000 bye over " + scheme, shown
        step("server-initiated close shown: %s" % shown)
        session.wait_for("reconnect after the close", lambda d: d.get("state") == "open" and
                         int(d.get("opens", 0)) == opens + 1)
        step("reconnected after the server's close")
        screenshot(session, "%s-%s-server-close" % (browser, scheme))

        # The server goes away (SIGTERM: 1001 to everyone) and comes back on the same ports a moment later.
        opens += 1
        server.stop()
        session.wait_for("the page to notice the server is gone", lambda d: d.get("state") != "open")
        step("server stopped; page state %s" % session.dataset().get("state"))
        time.sleep(0.6)  # long enough for at least one refused attempt
        server.restart()
        step("server restarted on ports %d/%d" % (server.port, server.tls_port))
        session.wait_for("reconnect after the restart", lambda d: d.get("state") == "open" and
                         int(d.get("opens", 0)) == opens + 1, timeout=10)
        step("reconnected after the restart (last close %s)" % session.dataset().get("closeCode"))
        echo_both(session, scheme + " after restart")
        screenshot(session, "%s-%s-after-restart" % (browser, scheme))


def scenario_origin_story(browser, session, server):
    # The broken setup added "Connection: upgrade" next to "Access-Control-Allow-Origin: *". edgews refuses the
    # first at start-up, saying that the library writes it...
    refused = subprocess.run([os.environ["EDGEWS_BIN"], "serve", "--port", "0", "--header", "Connection: upgrade",
                              "--header", "Access-Control-Allow-Origin: *"],
                             capture_output=True, text=True, timeout=20)
    assert refused.returncode != 0 and "edgews writes Connection itself" in refused.stderr, refused
    step("refused at start-up: %s" % refused.stderr.strip())
    # ...serves the second once, canonically (the strict validator agrees)...
    doctor = subprocess.run([os.environ["EDGEWS_BIN"], "doctor", "--json", "ws://127.0.0.1:%d/" % server.port],
                            capture_output=True, text=True, timeout=30)
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 0 and report["defects"] == [], report
    assert report["response_head"].count("Access-Control-Allow-Origin: *\r\n") == 1, report["response_head"]
    # ...and the browser connects and echoes over both schemes.
    for scheme, port in (("ws", server.port), ("wss", server.tls_port)):
        http = "http" if scheme == "ws" else "https"
        load_and_open(session, "%s://localhost:%d/" % (http, port))
        echo_both(session, scheme)
        screenshot(session, "%s-%s-origin-story" % (browser, scheme))


# WebKit's frozen engine version: Safari, iOS browsers and WebKitGTK say "AppleWebKit/605.1.15"; Chromium says
# "AppleWebKit/537.36". What an operator would name to decline compression for Safari's engine.
WEBKIT_UA = "AppleWebKit/605"
# Compressible and longer than the server's --deflate-min-size (64 by default), so it goes out compressed.
DEFLATE_TEXT = "{\"type\":\"quote\",\"symbol\":\"EDGE\",\"bid\":101.25,\"ask\":101.5} " * 60 + "\u2713"
DEFLATE_BINARY_SIZE = 65536  # the page's pattern repeats every 256 bytes


def deflate_echo(session, label):
    """Echoes DEFLATE_TEXT and a 64 KiB binary message through the page's buttons. The text is set by script:
    typing thousands of characters through WebDriver is slow in WebKit."""
    text = DEFLATE_TEXT + " " + label
    session.execute("document.getElementById('text').value = arguments[0];", text)
    session.click("#send-text")
    data = session.wait_for("the %d-character text echo" % len(text),
                            lambda d: d.get("textEcho", "").startswith(("MISMATCH", "error")) or
                            d.get("textEcho") == text)
    assert data["textEcho"] == text, data["textEcho"][:200]
    session.execute("document.getElementById('binary-size').value = arguments[0];", str(DEFLATE_BINARY_SIZE))
    session.click("#send-binary")
    expected = "%d bytes, identical" % DEFLATE_BINARY_SIZE
    data = session.wait_for("the binary echo", lambda d: d.get("binaryEcho") in (expected, "MISMATCH") or
                            d.get("binaryEcho", "").startswith("error"))
    assert data["binaryEcho"] == expected, data["binaryEcho"]
    step("echoed %d characters of text and %d binary bytes (%s)" % (len(text), DEFLATE_BINARY_SIZE, label))


def upgrade_head(port, user_agent):
    """A browser-like upgrade offering permessage-deflate with the given User-Agent, over a raw socket: returns
    the response head exactly as sent, so that an empty or stray Sec-WebSocket-Extensions line would show."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = ("GET / HTTP/1.1\r\nHost: localhost:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nOrigin: http://localhost:%d\r\n"
               "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
               "User-Agent: %s\r\n\r\n" % (port, key, port, user_agent))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request.encode())
        head = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in head and time.monotonic() < deadline:
            chunk = connection.recv(4096)
            if not chunk:
                break
            head += chunk
    head = head.split(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 101 "), head
    return head


def extension_lines(head):
    return [line for line in head.split("\r\n")[1:] if line.lower().startswith("sec-websocket-extensions")]


def scenario_deflate(browser, session, server):
    for scheme, port in (("ws", server.port), ("wss", server.tls_port)):
        http = "http" if scheme == "ws" else "https"
        data = load_and_open(session, "%s://localhost:%d/" % (http, port))
        extensions = data.get("extensions", "")
        assert extensions.startswith("permessage-deflate"), "socket.extensions is %r" % extensions
        shown = session.execute("return document.getElementById('extensions').textContent")
        assert shown == extensions, shown
        step("negotiated over %s: %s" % (scheme, extensions))
        deflate_echo(session, scheme)
        session.execute("window.scrollTo(0, 0);")  # the state table, with the extensions, in the picture
        screenshot(session, "%s-%s-deflate" % (browser, scheme))


def scenario_deflate_declined(browser, session, server):
    user_agent = session.execute("return navigator.userAgent")
    assert WEBKIT_UA in user_agent, "the browser's User-Agent %r does not contain %r" % (user_agent, WEBKIT_UA)
    step("User-Agent: %s" % user_agent)
    # The 101 for this User-Agent names no extension (not even an empty header, which some WebKit versions
    # reject), while the same server still compresses for others: the control shows the check can fail.
    declined = upgrade_head(server.port, user_agent)
    assert extension_lines(declined) == [], declined
    accepted = upgrade_head(server.port, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                            "Chrome/120.0.0.0 Safari/537.36")
    assert [line.split(":", 1)[1].strip().startswith("permessage-deflate")
            for line in extension_lines(accepted)] == [True], accepted
    doctor = subprocess.run([os.environ["EDGEWS_BIN"], "doctor", "--deflate", "--json",
                             "ws://127.0.0.1:%d/" % server.port], capture_output=True, text=True, timeout=30)
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 0 and report["defects"] == [], report
    assert "Sec-WebSocket-Extensions: permessage-deflate" in report["response_head"], report["response_head"]
    step("101 for the declined User-Agent has no Sec-WebSocket-Extensions; others (and doctor --deflate) get "
         "permessage-deflate")
    for scheme, port in (("ws", server.port), ("wss", server.tls_port)):
        http = "http" if scheme == "ws" else "https"
        data = load_and_open(session, "%s://localhost:%d/" % (http, port))
        assert data.get("extensions") == "", "socket.extensions is %r" % data.get("extensions")
        assert session.execute("return document.getElementById('extensions').textContent") == "none"
        step("opened uncompressed over %s" % scheme)
        deflate_echo(session, scheme)
        session.execute("window.scrollTo(0, 0);")
        screenshot(session, "%s-%s-deflate-declined" % (browser, scheme))


SCENARIOS = {
    # scenario: (function, extra `edgews serve` arguments)
    "echo": (scenario_echo, ["--test-commands"]),
    "origin_story": (scenario_origin_story, ["--header", "Access-Control-Allow-Origin: *"]),
    "deflate": (scenario_deflate, ["--deflate"]),
    "deflate_declined": (scenario_deflate_declined, ["--deflate", "--deflate-decline-ua", WEBKIT_UA]),
}


def main():
    browser, scenario = sys.argv[1], sys.argv[2]
    with temp_dir() as directory:
        certs = make_certs(directory)
        run, extra = SCENARIOS[scenario]
        server = serve(*extra, tls=(certs["cert"], certs["key"]))
        driver = None
        session = None
        try:
            driver = DRIVERS[browser]()
            session = driver.session()
            step("%s %s session started" % (browser, session.capabilities.get("browserVersion", "?")))
            run(browser, session, server)
        except BaseException:
            if session is not None:
                try:
                    screenshot(session, "%s-%s-FAILED" % (browser, scenario))
                except Exception:  # the failure report matters more than the screenshot
                    pass
            if driver is not None:
                print("driver log (tail):\n" + driver.log(), file=sys.stderr)
            raise
        finally:
            if session is not None:
                session.delete()
            if driver is not None:
                driver.stop()
            server.stop()
    step("passed")


if __name__ == "__main__":
    main()
