"""Real browsers against `edgews serve`: headless Chromium and WebKit (Safari's engine) load the test page over
ws:// and wss:// (the development certificate accepted), reach OPEN, echo text and binary through the page's
buttons, receive a server-initiated close and show its code and reason, and reconnect by themselves after the
server is restarted on the same ports. The origin story runs as a regression test. Screenshots go to
$EDGEWS_ARTIFACTS/browser/.

  browser_test.py chromium echo|origin_story
  browser_test.py webkit echo|origin_story
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from webdriver import DRIVERS  # noqa: E402
from wsfixture import EdgewsServer, make_cert, temp_dir  # noqa: E402

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


def main():
    browser, scenario = sys.argv[1], sys.argv[2]
    with temp_dir() as directory:
        ca, cert, key = make_cert(directory)
        extra = ["--test-commands"] if scenario == "echo" else ["--header", "Access-Control-Allow-Origin: *"]
        server = EdgewsServer(tls=(cert, key), extra=extra).start()
        driver = None
        session = None
        try:
            driver = DRIVERS[browser]()
            session = driver.session()
            step("%s %s session started" % (browser, session.capabilities.get("browserVersion", "?")))
            {"echo": scenario_echo, "origin_story": scenario_origin_story}[scenario](browser, session, server)
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
