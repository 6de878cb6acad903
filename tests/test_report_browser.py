"""End-to-end test of the HTML report in headless Chromium, driven over the Chrome DevTools Protocol.

The page is opened from disk (file://) as a user would: it must render with no console errors and no
network requests, its tables must sort and filter, a backend named ``<script>alert(1)</script>`` must
show as text and run nothing, and a screenshot of it must not be blank.

Needs Debian's ``chromium`` (``.ci/browser-setup.sh`` installs it) and ``websocket-client`` (dev extra).
Without them the test is skipped on a developer's machine, but fails under CI (``CI`` set), where a
skip would hide a broken install step.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
TEST_BUDGET_S = 60.0  # the whole test, page build included
XSS_BACKEND = "<script>alert(1)</script>"


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it: .ci/browser-setup.sh and the dev extra)")
    pytest.skip(reason)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _load_unit_tests() -> Any:
    """tests/test_report.py, for its synthetic results and its loader of bench/report.py."""
    name = "tilearena_test_report_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "test_report.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class DevTools:
    """A minimal Chrome DevTools Protocol client: commands by id, events queued until asked for."""

    def __init__(self, url: str, deadline: float) -> None:
        import websocket  # websocket-client

        self._websocket_module = websocket
        self.deadline = deadline
        # No Origin header: Chromium refuses DevTools websockets from origins it was not told to allow.
        self.connection = websocket.create_connection(url, timeout=10, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _receive(self) -> dict[str, Any]:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the browser test ran out of time")
        self.connection.settimeout(min(remaining, 15.0))
        return json.loads(self.connection.recv())

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.connection.send(json.dumps(message))
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for index, event in enumerate(self.events):
            if event["method"] == method:
                return self.events.pop(index)
        while True:
            event = self._receive()
            if event.get("method") == method:
                return event
            if "method" in event:
                self.events.append(event)

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive in the next ``seconds`` (late console errors, requests)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.connection.settimeout(left)
            try:
                event = json.loads(self.connection.recv())
            except self._websocket_module.WebSocketTimeoutException:
                return
            if "method" in event:
                self.events.append(event)

    def close(self) -> None:
        self.connection.close()


class Page:
    """One browser tab attached through a flattened session."""

    def __init__(self, devtools: DevTools, session: str) -> None:
        self.devtools = devtools
        self.session = session

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.devtools.call(method, self.session, **params)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)


@pytest.fixture
def report_page(tmp_path: Path) -> Iterator[tuple[Page, DevTools, Path, dict]]:
    chromium = _chromium()
    _require(chromium is not None, "chromium is not installed (run .ci/browser-setup.sh)")
    _require(
        importlib.util.find_spec("websocket") is not None, "websocket-client is not installed (dev extra)"
    )
    deadline = time.monotonic() + TEST_BUDGET_S

    unit_tests = _load_unit_tests()
    results = unit_tests.synthetic_results()
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(results))
    index = unit_tests.report.write_report([results_path], tmp_path / "report")

    profile = tmp_path / "profile"
    browser_log = (tmp_path / "chromium.log").open("wb")
    assert chromium is not None
    process = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,1600",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=browser_log,
        stderr=subprocess.STDOUT,
    )
    devtools = None
    try:
        # Chromium writes the port it picked, and the browser's websocket path, once it listens.
        active_port = profile / "DevToolsActivePort"
        while not (active_port.exists() and len(active_port.read_text().split()) >= 2):
            if process.poll() is not None or time.monotonic() > deadline - 30:
                browser_log.flush()
                pytest.fail(f"chromium did not start:\n{(tmp_path / 'chromium.log').read_text()[-3000:]}")
            time.sleep(0.1)
        port, path = active_port.read_text().split()[:2]
        devtools = DevTools(f"ws://127.0.0.1:{port}{path}", deadline)
        target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
        session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = Page(devtools, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride", width=1280, height=1600, deviceScaleFactor=1, mobile=False
        )
        yield page, devtools, index, results
    finally:
        if devtools is not None:
            # The browser may already be gone; it is waited for, or killed, below either way.
            with contextlib.suppress(Exception):
                devtools.call("Browser.close")
            devtools.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        browser_log.close()


def test_report_in_headless_chromium(report_page: tuple[Page, DevTools, Path, dict], tmp_path: Path) -> None:
    page, devtools, index, results = report_page
    url = index.resolve().as_uri()
    page.call("Page.navigate", url=url)
    devtools.wait_for("Page.loadEventFired")

    # Renders: title, the per-op sections, and every plot laid out with a size.
    assert page.evaluate("document.title").startswith("tilearena report")
    assert page.evaluate("document.querySelectorAll('section.op').length") == 3
    sizes = page.evaluate(
        "Array.from(document.querySelectorAll('figure svg')).map(s => s.getBoundingClientRect().width)"
    )
    assert len(sizes) == 11 and min(sizes) > 100

    # A screenshot of the page as opened, which is not blank.
    shot = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "report.png").write_bytes(shot)
    if os.environ.get("TILEARENA_REPORT_SCREENSHOT"):
        Path(os.environ["TILEARENA_REPORT_SCREENSHOT"]).write_bytes(shot)
    from PIL import Image  # a dependency of matplotlib

    image = Image.open(io.BytesIO(shot)).convert("RGB")
    assert image.size == (1280, 1600)
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50
    most_common_share = max(count for count, _ in colors) / (image.size[0] * image.size[1])
    assert most_common_share < 0.97, "the screenshot is (nearly) one colour"

    # The markup-like backend name is text in the table; no script but the page's two ran or exist.
    assert page.evaluate(
        "Array.from(document.querySelectorAll('td.backend')).some(td => td.firstChild.textContent.trim() === "
        + json.dumps(XSS_BACKEND)
        + ")"
    )
    assert page.evaluate("document.scripts.length") == 2
    embedded = page.evaluate("JSON.parse(document.getElementById('tilearena-results').textContent)")
    assert embedded[0]["rows"] == json.loads(json.dumps(results["rows"]))

    # Sorting: a real click on the "time (ms)" header of the first table sorts its rows by time,
    # missing times last; a second click reverses the order.
    table = "#run1-op0-table"  # rmsnorm
    header = f"{table} thead th:nth-child(5)"
    assert page.evaluate(f"document.querySelector({json.dumps(header)}).textContent").startswith("time (ms)")
    times = (
        f"Array.from(document.querySelectorAll({json.dumps(table + ' tbody tr')}))"
        ".map(r => r.cells[4].dataset.sort === '' ? null : Number(r.cells[4].dataset.sort))"
    )
    before = page.evaluate(times)
    page.click(header)
    ascending = page.evaluate(times)
    timed = [t for t in ascending if t is not None]
    assert timed == sorted(timed) and ascending[: len(timed)] == timed and ascending != before
    assert (
        page.evaluate(f"document.querySelector({json.dumps(header)}).getAttribute('aria-sort')")
        == "ascending"
    )
    page.click(header)
    descending = page.evaluate(times)
    assert [t for t in descending if t is not None] == sorted(timed, reverse=True)
    assert descending[len(timed) :] == [None] * (len(descending) - len(timed))

    # Filtering: typing into the filter box keeps only the matching rows.
    filter_box = "input.table-filter[data-table='run1-op0-table']"
    page.click(filter_box)
    page.call("Input.insertText", text="cute 4096")
    visible = page.evaluate(
        f"Array.from(document.querySelectorAll({json.dumps(table + ' tbody tr')})).filter(r => !r.hidden)"
        ".map(r => r.textContent)"
    )
    assert visible and all("cute" in text and "4096" in text for text in visible)

    # Nothing went wrong on the way: no console error, no exception, no dialog (alert), no request
    # other than the page itself (data: images are not network).
    devtools.drain(0.5)
    problems = []
    for event in devtools.events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            problems.append(f"console {params['type']}: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            problems.append(f"exception: {params.get('exceptionDetails')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            problems.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Page.javascriptDialogOpening":
            problems.append(f"dialog opened: {params.get('message')}")
        elif method == "Network.requestWillBeSent":
            requested = params.get("request", {}).get("url", "")
            if requested != url and not requested.startswith("data:"):
                problems.append(f"request: {requested}")
    assert not problems, "\n".join(problems)
