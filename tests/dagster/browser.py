"""Headless Chromium driven over the DevTools protocol: open a page, wait until it shows some
text (real time, so pages that lay out in web workers finish), read it, screenshot it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import websockets

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,900", "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One tab of a running browser."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self._ids = itertools.count(1)

    async def _call(self, ws: Any, method: str, params: dict[str, Any] | None = None) -> Any:
        msg_id = next(self._ids)
        await ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def _visit(self, url: str, expect: Sequence[str], absent: Sequence[str],
                     timeout_s: float, screenshot: Path | None, height: int) -> str:
        async with websockets.connect(self.ws_url, max_size=64 * 1024 * 1024) as ws:
            await self._call(ws, "Emulation.setDeviceMetricsOverride", {
                "width": 1400, "height": height, "deviceScaleFactor": 1, "mobile": False})
            await self._call(ws, "Page.enable")
            await self._call(ws, "Page.navigate", {"url": url})
            deadline = time.monotonic() + timeout_s
            text = ""
            while time.monotonic() < deadline:
                result = await self._call(ws, "Runtime.evaluate", {
                    "expression": "document.body ? document.body.innerText : ''",
                    "returnByValue": True})
                text = str(result.get("result", {}).get("value") or "")
                if all(e in text for e in expect) and not any(a in text for a in absent):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # let the graph finish drawing edges
            result = await self._call(ws, "Runtime.evaluate", {
                "expression": "document.body ? document.body.innerText : ''",
                "returnByValue": True})
            text = str(result.get("result", {}).get("value") or "")
            if screenshot is not None:
                shot = await self._call(ws, "Page.captureScreenshot", {"format": "png"})
                screenshot.write_bytes(base64.b64decode(shot["data"]))
            return text

    def visit(self, url: str, expect: Sequence[str] = (), *, absent: Sequence[str] = (),
              timeout_s: float = 60.0, screenshot: Path | None = None, height: int = 900) -> str:
        """Open ``url``, wait (up to ``timeout_s``) until its text has every string of
        ``expect`` and none of ``absent``; return its text, after a screenshot if asked."""
        return asyncio.run(self._visit(url, expect, absent, timeout_s, screenshot, height))


@contextlib.contextmanager
def browser(profile: Path, log: Path) -> Iterator[Page]:
    """A headless Chromium on loopback with its own profile; stopped (by pid) on exit."""
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("chromium is not installed (Debian: apt-get install -y chromium)")
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "DevToolsActivePort").unlink(missing_ok=True)  # left by an earlier browser
    with log.open("wb") as sink:
        proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        port = _devtools_port(profile, log, proc)
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                                    timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        yield Page(page["webSocketDebuggerUrl"])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _devtools_port(profile: Path, log: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    marker = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited: {log.read_text(errors='replace')[-2000:]}")
        if marker.exists():
            first = marker.read_text().splitlines()[:1]
            if first and first[0].isdigit():
                return int(first[0])
        found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/",
                          log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    raise RuntimeError("chromium did not open its DevTools port")
