"""``calibreg.Registry``, the one way in: connections, nested transactions, translated errors."""

from __future__ import annotations

import pandas as pd
import pytest

from calibreg.client import Registry
from calibreg.errors import CalibregError, ConflictError, NotFoundError, SchemaError


def _exposures(ids: list[int], tmp_path) -> pd.DataFrame:
    """Exposure records as the readers hand them to the facade."""
    from calibreg.formats import read_exposures

    path = tmp_path / f"exposures-{'-'.join(map(str, ids))}.csv"
    pd.DataFrame({"instrument": "Cam", "id": ids, "physical_filter": "r"}).to_csv(path, index=False)
    return read_exposures(path)


@pytest.fixture
def registry(engine, lsstcam_spec) -> Registry:
    reg = Registry(engine=engine)
    reg.ingest_camera(lsstcam_spec, source="camera", sha256="c", instrument="Cam")
    return reg


def test_a_database_without_schema_is_refused_with_the_way_out(db_url) -> None:
    with pytest.raises(SchemaError, match="calibreg db upgrade"):
        Registry(db_url)
    reg = Registry(db_url, check_schema=False)
    try:
        assert reg.schema_revision() is None
        assert reg.upgrade() == Registry.head_revision()
    finally:
        reg.close()
    Registry(db_url).close()  # now it opens


def test_nested_transaction_rolls_back_only_the_inner_block(registry, tmp_path) -> None:
    def inner() -> None:
        with registry.transaction():
            registry.ingest_exposures(_exposures([2], tmp_path), source="b", sha256="b")
            raise ConflictError("inner failure")

    with registry.transaction():
        registry.ingest_exposures(_exposures([1], tmp_path), source="a", sha256="a")
        with pytest.raises(ConflictError):
            inner()
    assert sorted(registry.exposures("Cam")["id"]) == [1]


def test_an_error_in_the_outer_transaction_undoes_everything(registry, tmp_path) -> None:
    def both_then_fail() -> None:
        with registry.transaction():
            registry.ingest_exposures(_exposures([1], tmp_path), source="a", sha256="a")
            registry.ingest_exposures(_exposures([2], tmp_path), source="b", sha256="b")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        both_then_fail()
    assert registry.exposures("Cam").empty


def test_reads_inside_a_transaction_see_its_own_writes(registry, tmp_path) -> None:
    with registry.transaction():
        registry.ingest_exposures(_exposures([7], tmp_path), source="a", sha256="a")
        assert list(registry.exposures("Cam")["id"]) == [7]


def test_driver_errors_on_reads_come_out_as_calibreg_errors(registry) -> None:
    from sqlalchemy import text

    with pytest.raises(CalibregError) as info, registry.read() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert not isinstance(info.value, NotFoundError)
    assert "no_such_table" in str(info.value)


def test_unknown_names_are_not_found(registry) -> None:
    with pytest.raises(NotFoundError, match="Nope"):
        registry.detectors("Nope")
    with pytest.raises(NotFoundError, match="version 999"):
        registry.version(999)


def test_the_printable_url_never_shows_a_password() -> None:
    reg = Registry.__new__(Registry)
    reg.url = "postgresql+psycopg://alice:s3cret@db.example/registry"
    assert "s3cret" not in reg.database
    assert "alice" in reg.database
