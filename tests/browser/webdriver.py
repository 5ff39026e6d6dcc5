"""A small W3C WebDriver client (urllib + json, no selenium) and launchers for the two drivers the browser tests
use: chromedriver with Debian's Chromium (headless), and WebKitWebDriver with WebKitGTK's MiniBrowser under Xvfb.
Every process is started here and stopped by its PID; every wait has a deadline."""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1000,860"]
MINIBROWSER = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"


class WebDriverError(RuntimeError):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process, timeout=5):
    if process and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


class Session:
    def __init__(self, base, session_id, capabilities):
        self.base = base
        self.id = session_id
        self.capabilities = capabilities

    def _call(self, method, path, body=None, timeout=30):
        return call(self.base, method, "/session/%s%s" % (self.id, path), body, timeout)

    def navigate(self, url):
        self._call("POST", "/url", {"url": url})

    def execute(self, script, *args):
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        return self._call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        self._call("POST", "/element/%s/click" % self.find(css), {})

    def type(self, css, text):
        element = self.find(css)
        self._call("POST", "/element/%s/clear" % element, {})
        self._call("POST", "/element/%s/value" % element, {"text": text})

    def screenshot(self, path):
        png = base64.b64decode(self._call("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)
        return path

    def dataset(self):
        return self.execute("return Object.assign({}, document.body ? document.body.dataset : {});")

    def wait_for(self, what, predicate, timeout=15.0):
        """Polls the page's data-* attributes until predicate(dataset) holds; fails with the last ones seen."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.dataset()
            except WebDriverError as error:  # a navigation in progress
                last = {"error": str(error)}
            if predicate(last):
                return last
            time.sleep(0.1)
        log = ""
        try:
            log = self.execute("return document.getElementById('log') ? document.getElementById('log').textContent : ''")
        except WebDriverError:
            pass
        raise AssertionError("timed out after %.0f s waiting for %s; page state %r; page log:\n%s"
                             % (timeout, what, last, log))

    def delete(self):
        try:
            call(self.base, "DELETE", "/session/%s" % self.id, timeout=15)
        except (WebDriverError, OSError):
            pass


def call(base, method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            payload = json.loads(error.read())
        except ValueError:
            raise WebDriverError("%s %s: HTTP %d" % (method, path, error.code))
        value = payload.get("value", {})
        raise WebDriverError("%s %s: %s: %s" % (method, path, value.get("error"), value.get("message", "")[:2000]))
    return payload.get("value")


class Driver:
    """A WebDriver server process (and, for WebKit, the Xvfb display it needs)."""

    def __init__(self, name):
        self.name = name
        self.processes = []
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.temp = tempfile.mkdtemp(prefix="edgews-%s-" % name)
        self.log_path = os.path.join(self.temp, "driver.log")

    def _wait_ready(self, process, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise WebDriverError("%s exited with %s; log:\n%s" % (self.name, process.returncode, self.log()))
            try:
                if call(self.base, "GET", "/status", timeout=2).get("ready", True):
                    return
            except (WebDriverError, OSError):
                pass
            time.sleep(0.1)
        raise WebDriverError("%s did not answer /status within %d s; log:\n%s" % (self.name, timeout, self.log()))

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def new_session(self, capabilities, timeout=45):
        value = call(self.base, "POST", "/session", {"capabilities": {"alwaysMatch": capabilities}}, timeout)
        return Session(self.base, value["sessionId"], value.get("capabilities", {}))

    def stop(self):
        for process in reversed(self.processes):
            _stop(process)
        self.processes = []
        shutil.rmtree(self.temp, ignore_errors=True)


def require(path):
    if not (path and os.access(path, os.X_OK)):
        raise WebDriverError("%s is not installed: run tools/install-deps.sh test (chromium, chromium-driver, "
                             "webkit2gtk-driver, xvfb)" % path)
    return path


class Chromium(Driver):
    """chromedriver + Debian's headless Chromium. The sandbox needs user namespaces that containers often lack,
    hence --no-sandbox (the pages loaded are our own)."""

    def __init__(self):
        super().__init__("chromium")
        driver = require(shutil.which("chromedriver") or "/usr/bin/chromedriver")
        self.binary = require("/usr/bin/chromium")
        log = open(self.log_path, "w")
        self.processes.append(subprocess.Popen([driver, "--port=%d" % self.port, "--log-path=" + self.log_path],
                                               stdout=log, stderr=subprocess.STDOUT))
        self._wait_ready(self.processes[-1])

    def session(self):
        profile = tempfile.mkdtemp(prefix="profile-", dir=self.temp)
        return self.new_session({
            "browserName": "chrome",
            "acceptInsecureCerts": True,
            "goog:chromeOptions": {"binary": self.binary, "args": CHROMIUM_FLAGS + ["--user-data-dir=" + profile]},
        })


class WebKit(Driver):
    """WebKitWebDriver driving WebKitGTK's MiniBrowser (Safari's engine) on an Xvfb display: MiniBrowser has no
    headless mode. WebKit's own sandbox (bubblewrap) cannot start in this container, hence
    WEBKIT_DISABLE_SANDBOX_THIS_IS_DANGEROUS=1 in the driver's environment."""

    def __init__(self):
        super().__init__("webkit")
        driver = require(shutil.which("WebKitWebDriver") or "/usr/bin/WebKitWebDriver")
        xvfb = require(shutil.which("Xvfb") or "/usr/bin/Xvfb")
        require(MINIBROWSER)
        # Xvfb picks a free display and writes its number to the pipe (-displayfd).
        read_fd, write_fd = os.pipe()
        log = open(self.log_path, "w")
        self.processes.append(subprocess.Popen(
            [xvfb, "-displayfd", str(write_fd), "-screen", "0", "1000x860x24", "-nolisten", "tcp"],
            pass_fds=(write_fd,), stdout=log, stderr=subprocess.STDOUT))
        os.close(write_fd)
        display = b""
        deadline = time.monotonic() + 15
        while not display.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            display += chunk
        os.close(read_fd)
        if not display.strip():
            raise WebDriverError("Xvfb did not report a display; log:\n" + self.log())
        env = dict(os.environ, DISPLAY=":" + display.decode().strip(), WEBKIT_DISABLE_SANDBOX_THIS_IS_DANGEROUS="1",
                   GDK_BACKEND="x11", LIBGL_ALWAYS_SOFTWARE="1", NO_AT_BRIDGE="1")
        env.pop("WAYLAND_DISPLAY", None)
        self.processes.append(subprocess.Popen([driver, "--port=%d" % self.port], env=env, stdout=log,
                                               stderr=subprocess.STDOUT))
        self._wait_ready(self.processes[-1])

    def session(self):
        return self.new_session({
            "acceptInsecureCerts": True,
            "webkitgtk:browserOptions": {"binary": MINIBROWSER, "args": ["--automation"]},
        })


DRIVERS = {"chromium": Chromium, "webkit": WebKit}
