"""Open a report in headless Chromium with the network off and say whether it rendered.

Used by ``tests/test_report.py`` and to take the screenshots in ``docs/``:

    python tools/browser_check.py RUN/report.html --screenshot docs/report_fit.png

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright``
Python package (a dev dependency); Playwright drives the system browser, it downloads
nothing. Prints one JSON object: console errors, failed requests (any request at all is
a failure: the page must be self-contained), the ids of the sections present and, per
``<img>``, whether it decoded.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def check(page_file: Path, screenshot: Path | None = None, width: int = 1280) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    exe = find_chromium()
    if exe is None:
        raise RuntimeError("no chromium on PATH; apt-get install -y chromium")
    errors: list[str] = []
    requests: list[str] = []
    url = Path(page_file).resolve().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        ctx = browser.new_context(offline=True, viewport={"width": width, "height": 900})
        page = ctx.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url) if r.url != url else None)
        page.goto(url, wait_until="load")
        images = page.evaluate(
            "Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}))"
        )
        sections = page.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)")
        title = page.title()
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    external = [r for r in requests if not r.startswith("data:")]
    return {"title": title, "console_errors": errors, "requests": external,
            "sections": sections, "images": images}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("--screenshot", type=Path)
    ap.add_argument("--width", type=int, default=1280)
    a = ap.parse_args()
    print(json.dumps(check(a.page, a.screenshot, a.width), indent=1))


if __name__ == "__main__":
    main()
