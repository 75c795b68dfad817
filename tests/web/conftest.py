"""Fixtures of the web view's tests: a populated registry per backend, a real server, a browser.

* ``web_db``: the :mod:`web_sample` registry (real LSSTCam geometry, simulated flats, a tag
  history and an HTML-injection tag), built once per backend and session. On PostgreSQL the
  URL carries a password (the test server trusts any), so the tests can check that no page
  shows it.
* ``web_server``: a ``calibreg serve`` subprocess on loopback over that database.
* ``browser``: headless Debian chromium through the system chromedriver (selenium). Outside CI
  a missing browser skips with the reason; under ``CI`` (or ``CALIBREG_REQUIRE_BROWSER=1``)
  it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_sample import WebSample, build

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine

STARTUP_TIMEOUT = 30.0
#: The password put in the PostgreSQL URL (the test server's trust auth ignores it).
PG_PASSWORD = "web-view-secret-pw"
SHOTS = Path(os.environ.get("CALIBREG_WEB_SHOTS", "/work/web-shots"))
CHROMIUM = ("chromium", "/usr/bin/chromium")
CHROMEDRIVER = ("chromedriver", "/usr/bin/chromedriver")


def _postgres_schema(base_url: str) -> Iterator[str]:
    """A URL (with a password) whose search_path is a new schema, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"t_web_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).set(password=PG_PASSWORD)
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def web_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, WebSample]]:
    """``(url, sample)``: a migrated database holding the web sample."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("web") / "registry.sqlite3"
        urls: Iterator[str] = iter([f"sqlite:///{path}"])
    else:
        urls = _postgres_schema(request.getfixturevalue("postgres_base_url"))
    url = next(urls)
    try:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        with Registry(url) as registry:
            sample = build(registry)
        yield url, sample
    finally:
        for _ in urls:  # finish the generator: drops the PostgreSQL schema
            pass


@pytest.fixture(scope="session")
def web_registry(web_db: tuple[str, WebSample]) -> Iterator[Registry]:
    """A Registry on the web sample (the ground truth the pages are checked against)."""
    with Registry(web_db[0]) as registry:
        yield registry


@pytest.fixture(scope="session")
def web_sample(web_db: tuple[str, WebSample]) -> WebSample:
    """What the web sample holds."""
    return web_db[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def web_server(
    web_db: tuple[str, WebSample], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of a running ``calibreg serve`` over the web sample."""
    port = _free_port()
    log = tmp_path_factory.mktemp("web-serve") / "serve.log"
    cmd = [sys.executable, "-m", "calibreg_cli.main", "serve", "--db", web_db[0]]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"calibreg serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"calibreg serve did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def browser_required() -> bool:
    """Whether a missing browser must fail the run rather than skip."""
    return bool(os.environ.get("CI")) or os.environ.get("CALIBREG_REQUIRE_BROWSER") == "1"


def _no_browser(reason: str) -> None:
    if browser_required():
        pytest.fail(f"a headless browser is required here (CI) but {reason}")
    pytest.skip(reason)


def _find(candidates: tuple[str, str]) -> str | None:
    found = shutil.which(candidates[0])
    if found:
        return found
    return candidates[1] if Path(candidates[1]).exists() else None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless chromium driven by selenium through the system chromedriver."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _no_browser("selenium is not installed (pip install -e '.[dev]')")
    chromium, driver_path = _find(CHROMIUM), _find(CHROMEDRIVER)
    if chromium is None or driver_path is None:
        _no_browser(
            "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1800",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as err:
        _no_browser(f"chromium did not start: {str(err).strip().splitlines()[0]}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where the screenshots of the pages go."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
