"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``CALIBREG_TEST_POSTGRES_URL`` (e.g.
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets its own schema, created before
and dropped after, so tests are isolated and can run in parallel. Without the variable the
PostgreSQL half skips with that reason; under CI (``CI`` set) or with
``CALIBREG_REQUIRE_POSTGRES=1`` a missing or unreachable server *fails* instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ENV = "CALIBREG_TEST_POSTGRES_URL"
TEST_DATA = Path(__file__).resolve().parent / "data"
LSSTCAM_YAML = (
    Path(__file__).resolve().parents[1] / "calibreg" / "data" / "cameras" / "lsstCamSim.yaml"
)


def wait_for(check, timeout: float = 10.0) -> bool:
    """Poll ``check`` until it holds or ``timeout`` seconds pass; return whether it held.

    For what arrives asynchronously, such as a PostgreSQL NOTIFY (milliseconds after a commit).
    """
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


def postgres_required() -> bool:
    """Whether a missing PostgreSQL must fail the run rather than skip."""
    return bool(os.environ.get("CI")) or os.environ.get("CALIBREG_REQUIRE_POSTGRES") == "1"


def _no_postgres(reason: str) -> None:
    if postgres_required():
        pytest.fail(f"PostgreSQL is required here but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    """The server URL from the environment, checked once per session."""
    url = os.environ.get(PG_ENV)
    if not url:
        _no_postgres(f"{PG_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as err:
        _no_postgres(f"cannot connect to {parsed.render_as_string(hide_password=True)}: {err}")
    try:
        _ensure_btree_gist(engine)
    finally:
        engine.dispose()
    return parsed.render_as_string(hide_password=False)


def _ensure_btree_gist(engine) -> None:
    """Install btree_gist once, in ``public``, before any test schema is migrated.

    The migrations say ``CREATE EXTENSION IF NOT EXISTS btree_gist``, which installs into the
    first schema of the search path: in a test's own schema, the extension would be dropped
    with that schema (``DROP SCHEMA ... CASCADE``) under the feet of every other test using it.
    Parallel workers may race here; the loser finds it installed.
    """
    from sqlalchemy import exc, text

    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public"))
    except exc.IntegrityError:
        pass


def _postgres_schema_url(base_url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    parsed = make_url(base_url)
    url = parsed.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend (no schema yet)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite3'}"
        return
    base = request.getfixturevalue("postgres_base_url")
    yield from _postgres_schema_url(base)


@pytest.fixture
def engine(db_url: str):
    """An engine on a database migrated to head."""
    from calibreg.db.migrate import upgrade
    from calibreg.db.session import make_engine

    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real third-party input files, copied into ``tests/data`` (see its README)."""
    return TEST_DATA


@pytest.fixture(scope="session")
def lsstcam_spec():
    """The real LSSTCam geometry, parsed once per session."""
    from calibreg.formats import read_camera

    return read_camera(LSSTCAM_YAML, instrument="LSSTCam")
