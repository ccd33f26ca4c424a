"""/docs works offline: Swagger UI's assets and favicon come from the API itself, and the page renders in a browser
that can reach nothing but loopback."""

from __future__ import annotations

import json
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from aidc.config import Site
from api.app import create_app
from api.auth import TokenStore
from api.context import ApiContext
from api.server import ApiServer
from historian import open_historian
from tests.browser import CHROMIUM_FLAGS, free_port, wait_for
from tests.debtools import require_tool

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
# Chromium resolves no name and reaches no address but the API's: an asset left on a CDN cannot load.
OFFLINE_FLAG = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


@pytest.fixture
def api_url(small_site: Site) -> Iterator[str]:
    """The API over a 4-rack site with an empty historian, on a free loopback port."""
    with open_historian(small_site.config.historian, small_site.data_dir) as hist:
        ctx = ApiContext(site=small_site, historian=hist, tokens=TokenStore.from_env({}))
        with ApiServer(create_app(ctx), port=free_port()) as server:
            yield server.url


class _Refs(HTMLParser):
    """Every src and href attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def fetch(url: str) -> tuple[int, str, bytes]:
    """Status, content type and body of one GET."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - http://127.0.0.1 only
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def external_urls(base: str, page: str) -> tuple[list[str], list[str]]:
    """The page's asset references resolved against ``base``, and those whose host is not loopback."""
    parser = _Refs()
    parser.feed(page)
    refs = [urllib.parse.urljoin(base, r) for r in parser.refs]
    # Absolute URLs inside inline scripts (e.g. SwaggerUIBundle({url: ...})) count too.
    words = page.replace("'", '"').split('"')
    refs += [w for w in words if w.startswith(("http://", "https://", "//"))]
    refs = list(dict.fromkeys(refs))
    return refs, [r for r in refs if urllib.parse.urlsplit(urllib.parse.urljoin(base, r)).hostname not in LOOPBACK]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_only_the_api_itself(api_url: str, page: str) -> None:
    """/docs and /redoc answer 200 and every script, stylesheet and icon they reference is served by the API."""
    status, ctype, body = fetch(api_url + page)
    assert status == 200
    assert ctype.startswith("text/html")
    refs, outside = external_urls(api_url + page, body.decode())
    assert outside == []
    assets = [r for r in refs if r.endswith((".js", ".css", ".png"))]
    kinds = {a.rsplit(".", 1)[1] for a in assets}
    assert {"js", "png"} <= kinds
    assert page == "/redoc" or "css" in kinds  # ReDoc styles itself from its script
    for asset in assets:
        status, ctype, data = fetch(asset)
        assert status == 200, asset
        assert len(data) > 1000, asset
        assert ctype.split(";")[0] in {"application/javascript", "text/javascript", "text/css", "image/png"}, asset


def test_the_reference_check_sees_a_cdn() -> None:
    """The check flags an asset on another host, in an attribute or in an inline script."""
    page = ('<link href="https://cdn.example.org/ui.css"><script src="/docs/assets/a.js"></script>'
            "<script>SwaggerUIBundle({url: 'https://other.example/openapi.json'})</script>")  # fmt: skip
    _, outside = external_urls("http://127.0.0.1:1/docs", page)
    assert outside == ["https://cdn.example.org/ui.css", "https://other.example/openapi.json"]


def offline_chromium(profile: Path) -> Any:
    """Headless Debian Chromium that resolves nothing outside loopback, with browser and performance logs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = require_tool("chromium")
    for flag in (*CHROMIUM_FLAGS, OFFLINE_FLAG, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(require_tool("chromedriver", "chromium-driver")), options=opts)


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked the network for (Chromium's DevTools Network.requestWillBeSent events)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


@pytest.mark.needs_deb
def test_swagger_ui_renders_offline_in_chromium(api_url: str) -> None:
    """In Chromium with no route outside loopback, /docs renders the title and every operation of the OpenAPI
    document, requests nothing from another host, and logs no error."""
    from selenium.webdriver.common.by import By

    spec = json.loads(fetch(api_url + "/openapi.json")[2])
    operations = sum(len(ops) for ops in spec["paths"].values())
    with tempfile.TemporaryDirectory() as profile:
        driver = offline_chromium(Path(profile))
        try:
            driver.get(api_url + "/docs")
            blocks = wait_for(lambda: len(b := driver.find_elements(By.CSS_SELECTOR, ".opblock")) >= operations and b,
                              60, f"Swagger UI's {operations} operations")  # fmt: skip
            assert len(blocks) == operations
            assert "aidc API" in driver.find_element(By.CSS_SELECTOR, ".info .title").text
            assert driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path[data-path='/metrics']")
            urls = requested_urls(driver)
            errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        finally:
            driver.quit()
    assert any(u.endswith("/openapi.json") for u in urls)
    assert any(u.endswith(".js") for u in urls)
    # Only network requests count (Chromium also logs its own chrome:// pages and data: URLs).
    network = [u for u in urls if urllib.parse.urlsplit(u).scheme in ("http", "https", "ws", "wss")]
    assert [u for u in network if urllib.parse.urlsplit(u).hostname not in LOOPBACK] == []
    assert errors == []
