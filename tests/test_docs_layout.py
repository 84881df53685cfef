"""The documentation site at 1280 px: no code block overflows its column (headless Chromium)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
PAGES = [
    "index.html",
    "quickstart/index.html",
    "migration/index.html",
    "guides/fastapi/index.html",
    "guides/starlette/index.html",
    "guides/websockets/index.html",
    "operations/index.html",
]


def test_code_blocks_fit_at_1280_px(tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=True,
        timeout=120,
    )
    overflowing: dict[str, list[str]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            for name in PAGES:
                page.goto((site / name).as_uri())
                wide = page.eval_on_selector_all(
                    "pre > code",
                    "els => els.filter(e => e.scrollWidth > e.clientWidth + 1)"
                    ".map(e => e.textContent.split('\\n')[0].slice(0, 60))",
                )
                if wide:
                    overflowing[name] = wide
        finally:
            browser.close()
    assert overflowing == {}
