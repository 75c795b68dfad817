"""Fixtures of the HTTP tests: one populated registry per backend, shared by every test.

The API never writes, so the tests cannot disturb each other's data: the database is migrated,
ingested and solved once per backend and session (about a second of work) instead of once per
test. It is built exactly as the shared ``engine`` fixture builds its databases (migrations to
head; PostgreSQL in a fresh schema, dropped afterwards) and parametrized the same way.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from http_sample import Sample, build_sample, certify_sample
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from calibreg.http.app import create_app


def _postgres_schema(base_url: str) -> Iterator[str]:
    """A URL whose search_path is a new, empty schema; the schema is dropped afterwards."""
    schema = f"t_http_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def sample_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Sample, str | None]]:
    """``(url, sample, certify_error)``: a migrated database holding the TestCam sample.

    Certification is attempted once; if ``Registry.certify`` fails, only the lookup tests
    (through :func:`certified`) report it, and everything else still runs.
    """
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("http") / "registry.sqlite3"
        urls: Iterator[str] = iter([f"sqlite:///{path}"])
    else:
        urls = _postgres_schema(request.getfixturevalue("postgres_base_url"))
    url = next(urls)
    engine = make_engine(url)
    try:
        upgrade(engine)
        registry = Registry(url, engine=engine)
        sample = build_sample(registry, certify=False)
        error = None
        if hasattr(registry, "certify"):
            try:
                sample = certify_sample(registry, sample)
            except Exception as err:  # reported by the lookup tests, which need it
                error = f"{type(err).__name__}: {err}"
        engine.dispose()
        yield url, sample, error
    finally:
        engine.dispose()
        for _ in urls:  # finish the generator: drops the PostgreSQL schema
            pass


@pytest.fixture(scope="session")
def db_url_with_sample(sample_db: tuple[str, Sample, str | None]) -> str:
    """The URL of the populated database (for a real server process)."""
    return sample_db[0]


@pytest.fixture(scope="session")
def registry(sample_db: tuple[str, Sample, str | None]) -> Iterator[Registry]:
    """A Registry on the populated database."""
    with Registry(sample_db[0]) as reg:
        yield reg


@pytest.fixture(scope="session")
def sample(sample_db: tuple[str, Sample, str | None]) -> Sample:
    """What the populated database holds."""
    return sample_db[1]


@pytest.fixture
def certified(sample_db: tuple[str, Sample, str | None]) -> Sample:
    """The sample, whose newest DETECTOR version must be certified (lookup tests)."""
    if not hasattr(Registry, "certify"):
        pytest.skip("Registry.certify is not available yet")
    _url, sample, error = sample_db
    if error is not None:
        pytest.fail(f"Registry.certify failed while building the sample: {error}")
    return sample


@pytest.fixture(scope="session")
def client(registry: Registry) -> Iterator[TestClient]:
    """An in-process client of the app over the populated registry."""
    with TestClient(create_app(registry)) as test_client:
        yield test_client


def pytest_report_header() -> str:
    """Say on which backends the HTTP suite will run."""
    pg = os.environ.get("CALIBREG_TEST_POSTGRES_URL")
    return f"calibreg http tests: sqlite{' + postgresql' if pg else ''}"
