"""Registries in several schemas of one PostgreSQL database stay out of each other's way.

What PostgreSQL shares database-wide, calibreg must key by schema:

* NOTIFY channels. Every calibreg schema notifies ``calibreg_generation``; a watcher that took a
  notification's number for its own generation keyed its registry's cached answers to another
  registry's (higher) counter, and then missed its own next certification: a read service
  would have served stale lookups.
* Advisory locks. The ingest lock had one constant key, so an ingest into one registry held up
  every other registry's.
"""

from __future__ import annotations

import contextlib
import time

import pytest
from sqlalchemy import text

from calibreg.client import Registry
from calibreg.db.migrate import upgrade
from calibreg.db.session import make_engine
from calibreg.registry import generation
from calibreg.services.simulate import simulate_flats
from tests.conftest import LSSTCAM_YAML, _postgres_schema_url, wait_for


@pytest.mark.postgres
def test_a_watcher_follows_its_own_registry_not_another_schemas(
    postgres_base_url, lsstcam_spec
) -> None:
    with contextlib.ExitStack() as stack:
        engines = []
        for _ in range(2):
            urls = _postgres_schema_url(postgres_base_url)
            stack.callback(lambda urls=urls: next(urls, None))  # drops the schema
            engine = make_engine(next(urls))
            stack.callback(engine.dispose)
            upgrade(engine)
            engines.append(engine)
        ours, other = engines
        watcher = generation.Watcher(ours)
        stack.callback(watcher.close)
        start = watcher()
        assert wait_for(lambda: watcher.listening), "the watcher never started listening"
        assert watcher() == start == generation.read(ours)

        # Another registry in the same database moves its counter far ahead, and its trigger
        # notifies the shared channel with that number.
        with other.begin() as conn:
            conn.execute(text("UPDATE certification_generation SET generation = 1000"))
            conn.execute(text("SELECT pg_notify('calibreg_generation', '1000')"))
        time.sleep(0.3)  # delivered in milliseconds
        assert watcher() == generation.read(ours) == start

        # This registry's own change (exposure writes bump the generation) is seen.
        reg = Registry(engine=ours)
        reg.ingest_camera(lsstcam_spec, source=str(LSSTCAM_YAML), sha256="c", instrument="LSSTCam")
        sim = simulate_flats(lsstcam_spec, n_exposures=2, seed=1, n_missing_frames=0)
        reg.ingest_exposures(sim.exposures, source="e", sha256="e")
        now = generation.read(ours)
        assert start < now < 1000
        assert wait_for(lambda: watcher() == now), (watcher(), now)


@pytest.mark.postgres
def test_ingests_wait_for_their_own_registry_only(postgres_base_url) -> None:
    """The ingest lock is an advisory lock, database-wide: keyed by schema, an ingest into one
    registry does not hold up ingests into another registry of the same database."""
    from sqlalchemy.exc import OperationalError

    from calibreg.registry.backend import backend_of

    with contextlib.ExitStack() as stack:
        engines = []
        for _ in range(2):
            urls = _postgres_schema_url(postgres_base_url)
            stack.callback(lambda urls=urls: next(urls, None))
            engine = make_engine(next(urls))
            stack.callback(engine.dispose)
            upgrade(engine)
            engines.append(engine)
        ours, other = engines
        holder = stack.enter_context(ours.connect())
        holder_tx = holder.begin()
        stack.callback(holder_tx.rollback)
        backend_of(holder).serialize_ingests(holder)  # an ingest into ours is running

        def take_lock(engine) -> None:
            with engine.connect() as conn, conn.begin():
                conn.execute(text("SET LOCAL lock_timeout = '300ms'"))
                backend_of(conn).serialize_ingests(conn)

        take_lock(other)  # an ingest into another registry does not wait for ours
        with pytest.raises(OperationalError, match="lock timeout"):
            take_lock(ours)  # a second ingest into the same one does
