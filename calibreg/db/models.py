"""The registry's tables (SQLAlchemy 2 declarative).

Layout follows the data flow: camera geometry (instrument → detector → amplifier), exposures,
per-frame background statistics, and the ingest batches that wrote them.

Conventions
-----------
* Time: exposure timespans are **TAI nanoseconds since 1970-01-01T00:00:00 TAI** (BIGINT), the
  representation LSST's butler uses in its own database. It is exact (no leap-second ambiguity,
  no float rounding) and orders correctly. Conversion to/from UTC happens at the edges
  (:mod:`calibreg.formats.timescale`). Bookkeeping instants (``created_at``...) are aware UTC
  timestamps (:class:`~calibreg.db.types.UTCDateTime`).
* NULL in a measurement column (median, sigma) means NaN: "no valid measurement" (a dead
  amplifier). ``n_pixels`` is never NULL.
* Statistics tables are keyed by (instrument, exposure, detector[, amplifier index]); the key
  leads with the exposure so the quantum query (all statistics of a set of exposures) is a
  range scan. On SQLite they are WITHOUT ROWID tables: the primary key *is* the storage order,
  which halves the write cost of a bulk ingest.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from calibreg.db.base import Base
from calibreg.db.types import BoundedText, Float64, JSONDoc, Measurement, UTCDateTime, utcnow
from calibreg.domain import limits
from calibreg.domain.vocabulary import Level, Method


class Instrument(Base):
    """A camera, e.g. ``LSSTCam``."""

    __tablename__ = "instrument"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(BoundedText(limits.INSTRUMENT_NAME), unique=True)
    source_format: Mapped[str | None] = mapped_column(BoundedText(limits.SOURCE_FORMAT))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class IngestBatch(Base):
    """One ingest call: what was read, its content hash, what it changed, who and when."""

    __tablename__ = "ingest_batch"
    __table_args__ = (
        CheckConstraint("kind IN ('camera', 'exposures', 'stats')", name="kind"),
        CheckConstraint("n_rows >= 0", name="n_rows"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(BoundedText(limits.INGEST_KIND))
    instrument_id: Mapped[int | None] = mapped_column(ForeignKey("instrument.id"))
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(BoundedText(limits.SHA256), index=True)
    n_rows: Mapped[int] = mapped_column(BigInteger)
    n_inserted: Mapped[int] = mapped_column(BigInteger, default=0)
    n_replaced: Mapped[int] = mapped_column(BigInteger, default=0)
    n_unchanged: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    user_name: Mapped[str] = mapped_column(BoundedText(limits.USER_NAME))
    host: Mapped[str] = mapped_column(BoundedText(limits.HOST))
    software_version: Mapped[str] = mapped_column(BoundedText(limits.SOFTWARE_VERSION))
    options: Mapped[dict | None] = mapped_column(JSONDoc)


class Detector(Base):
    """A detector of an instrument, with its focal-plane placement."""

    __tablename__ = "detector"
    __table_args__ = (
        UniqueConstraint("instrument_id", "name"),
        CheckConstraint(
            "purpose IN ('SCIENCE', 'FOCUS', 'GUIDER', 'WAVEFRONT', 'OTHER')", name="purpose"
        ),
    )

    instrument_id: Mapped[int] = mapped_column(ForeignKey("instrument.id"), primary_key=True)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(BoundedText(limits.DETECTOR_NAME))
    serial: Mapped[str | None] = mapped_column(BoundedText(limits.DETECTOR_SERIAL))
    physical_type: Mapped[str | None] = mapped_column(BoundedText(limits.PHYSICAL_TYPE))
    purpose: Mapped[str] = mapped_column(BoundedText(limits.DETECTOR_PURPOSE))
    bbox_x0: Mapped[int] = mapped_column(Integer)
    bbox_y0: Mapped[int] = mapped_column(Integer)
    bbox_x1: Mapped[int] = mapped_column(Integer)
    bbox_y1: Mapped[int] = mapped_column(Integer)
    offset_x: Mapped[float] = mapped_column(Measurement, nullable=True)
    offset_y: Mapped[float] = mapped_column(Measurement, nullable=True)
    offset_z: Mapped[float] = mapped_column(Measurement, nullable=True)
    yaw: Mapped[float] = mapped_column(Measurement, nullable=True)
    pitch: Mapped[float] = mapped_column(Measurement, nullable=True)
    roll: Mapped[float] = mapped_column(Measurement, nullable=True)
    pixel_size_x: Mapped[float] = mapped_column(Measurement, nullable=True)
    pixel_size_y: Mapped[float] = mapped_column(Measurement, nullable=True)
    n_amplifiers: Mapped[int] = mapped_column(SmallInteger)
    batch_id: Mapped[int] = mapped_column(ForeignKey("ingest_batch.id"))


class Amplifier(Base):
    """An amplifier (segment) of a detector; ``amp_index`` is its 0-based camera order."""

    __tablename__ = "amplifier"
    __table_args__ = (
        ForeignKeyConstraint(
            ["instrument_id", "detector_id"], ["detector.instrument_id", "detector.id"]
        ),
        UniqueConstraint("instrument_id", "detector_id", "name"),
        CheckConstraint("amp_index >= 0", name="amp_index"),
    )

    instrument_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    detector_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    amp_index: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(BoundedText(limits.AMP_NAME))
    bbox_x0: Mapped[int] = mapped_column(Integer)
    bbox_y0: Mapped[int] = mapped_column(Integer)
    bbox_width: Mapped[int] = mapped_column(Integer)
    bbox_height: Mapped[int] = mapped_column(Integer)
    gain: Mapped[float] = mapped_column(Measurement, nullable=True)
    read_noise: Mapped[float] = mapped_column(Measurement, nullable=True)
    saturation: Mapped[float] = mapped_column(Measurement, nullable=True)


class Exposure(Base):
    """An exposure, with the butler's exposure-dimension fields.

    ``group_name`` is the butler's ``group`` (renamed: GROUP is an SQL keyword).
    ``timespan_begin``/``timespan_end`` are TAI nanoseconds since 1970 (see module docs).
    """

    __tablename__ = "exposure"
    __table_args__ = (
        Index("ix_exposure_instrument_id_physical_filter", "instrument_id", "physical_filter"),
        Index("ix_exposure_instrument_id_timespan_begin", "instrument_id", "timespan_begin"),
        CheckConstraint(
            "timespan_begin IS NULL OR timespan_end IS NULL OR timespan_begin <= timespan_end",
            name="timespan",
        ),
        CheckConstraint("exposure_time IS NULL OR exposure_time >= 0", name="exposure_time"),
    )

    instrument_id: Mapped[int] = mapped_column(ForeignKey("instrument.id"), primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    physical_filter: Mapped[str] = mapped_column(BoundedText(limits.PHYSICAL_FILTER))
    obs_id: Mapped[str | None] = mapped_column(BoundedText(limits.OBS_ID))
    observation_type: Mapped[str | None] = mapped_column(BoundedText(limits.OBSERVATION_TYPE))
    observation_reason: Mapped[str | None] = mapped_column(BoundedText(limits.OBSERVATION_REASON))
    science_program: Mapped[str | None] = mapped_column(BoundedText(limits.SCIENCE_PROGRAM))
    group_name: Mapped[str | None] = mapped_column(BoundedText(limits.GROUP_NAME))
    target_name: Mapped[str | None] = mapped_column(BoundedText(limits.TARGET_NAME))
    day_obs: Mapped[int | None] = mapped_column(Integer)
    seq_num: Mapped[int | None] = mapped_column(Integer)
    exposure_time: Mapped[float | None] = mapped_column(Float64)
    dark_time: Mapped[float | None] = mapped_column(Float64)
    timespan_begin: Mapped[int | None] = mapped_column(BigInteger)
    timespan_end: Mapped[int | None] = mapped_column(BigInteger)
    batch_id: Mapped[int] = mapped_column(ForeignKey("ingest_batch.id"))


#: Foreign keys of the statistics tables that PostgreSQL enforces with statement-level triggers
#: (migration 0001) instead of per-row FK triggers: same guarantees, one anti-join per COPY.
#: SQLite keeps them as real foreign keys. The schema comparison knows (calibreg.db.migrate).
STATEMENT_CHECKED_REFERENCES = frozenset(
    {
        "fk_detector_stats_instrument_id_exposure_id_exposure",
        "fk_detector_stats_instrument_id_detector_id_detector",
        "fk_amp_stats_instrument_id_exposure_id_exposure",
        "fk_amp_stats_instrument_id_detector_id_amp_index_amplifier",
    }
)


class DetectorStats(Base):
    """Clipped-mean background of one detector in one exposure (cp_pipe ``DETECTOR_*``)."""

    __tablename__ = "detector_stats"
    __table_args__ = (
        ForeignKeyConstraint(
            ["instrument_id", "exposure_id"], ["exposure.instrument_id", "exposure.id"]
        ),
        ForeignKeyConstraint(
            ["instrument_id", "detector_id"], ["detector.instrument_id", "detector.id"]
        ),
        CheckConstraint("n_pixels >= 0", name="n_pixels"),
        {"sqlite_with_rowid": False},
    )

    instrument_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exposure_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    detector_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    median: Mapped[float] = mapped_column(Measurement, nullable=True)
    sigma: Mapped[float] = mapped_column(Measurement, nullable=True)
    n_pixels: Mapped[int] = mapped_column(BigInteger)
    #: The ingest batch that wrote the row (provenance; deliberately not a foreign key: on
    #: PostgreSQL every FK costs a per-row trigger during COPY, and batches are never deleted).
    batch_id: Mapped[int] = mapped_column(Integer)


class AmpStats(Base):
    """Clipped-mean background of one amplifier in one exposure (cp_pipe ``AMP_*_i``)."""

    __tablename__ = "amp_stats"
    __table_args__ = (
        ForeignKeyConstraint(
            ["instrument_id", "exposure_id"], ["exposure.instrument_id", "exposure.id"]
        ),
        ForeignKeyConstraint(
            ["instrument_id", "detector_id", "amp_index"],
            ["amplifier.instrument_id", "amplifier.detector_id", "amplifier.amp_index"],
        ),
        CheckConstraint("n_pixels >= 0", name="n_pixels"),
        {"sqlite_with_rowid": False},
    )

    instrument_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exposure_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    detector_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    amp_index: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    median: Mapped[float] = mapped_column(Measurement, nullable=True)
    sigma: Mapped[float] = mapped_column(Measurement, nullable=True)
    n_pixels: Mapped[int] = mapped_column(BigInteger)
    #: The ingest batch that wrote the row (provenance; deliberately not a foreign key: on
    #: PostgreSQL every FK costs a per-row trigger during COPY, and batches are never deleted).
    batch_id: Mapped[int] = mapped_column(Integer)


# --------------------------------------------------------------------------- solves


class Quantum(Base):
    """The unit of one solve: instrument, filter, level and the selection of exposures.

    ``selection`` is the canonical JSON of the selection; ``selection_key`` its sha256, so that
    the same selection always maps to the same quantum and sequence numbers count within it.
    """

    __tablename__ = "quantum"
    __table_args__ = (
        UniqueConstraint("instrument_id", "physical_filter", "level", "selection_key"),
        CheckConstraint(Level.sql_check("level"), name="level"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instrument.id"))
    physical_filter: Mapped[str] = mapped_column(BoundedText(limits.PHYSICAL_FILTER))
    level: Mapped[str] = mapped_column(BoundedText(limits.LEVEL))
    selection_key: Mapped[str] = mapped_column(BoundedText(limits.SELECTION_KEY))
    selection: Mapped[dict] = mapped_column(JSONDoc)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CalibrationVersion(Base):
    """The immutable result of one solve of one quantum, with its full provenance.

    ``seq`` numbers versions within their quantum from 1; ``content_hash`` is the sha256 of
    the result (scales and labels), ``input_fingerprint`` the sha256 of the statistics used, so
    a later change of the inputs is detectable.
    """

    __tablename__ = "calibration_version"
    __table_args__ = (
        UniqueConstraint("quantum_id", "seq"),
        CheckConstraint("seq >= 1", name="seq"),
        # On SQLite, migration 0004 enforces these two with triggers (see its docstring).
        CheckConstraint(Level.sql_check("level"), name="level"),
        CheckConstraint(Method.sql_check("method"), name="method"),
        Index(
            "ix_calibration_version_instrument_id_physical_filter",
            "instrument_id",
            "physical_filter",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    quantum_id: Mapped[int] = mapped_column(ForeignKey("quantum.id"))
    seq: Mapped[int] = mapped_column(Integer)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instrument.id"))
    physical_filter: Mapped[str] = mapped_column(BoundedText(limits.PHYSICAL_FILTER))
    level: Mapped[str] = mapped_column(BoundedText(limits.LEVEL))
    method: Mapped[str] = mapped_column(BoundedText(limits.METHOD))
    n_exposures: Mapped[int] = mapped_column(Integer)
    n_rows: Mapped[int] = mapped_column(Integer)
    n_missing: Mapped[int] = mapped_column(Integer)
    n_rejected: Mapped[int] = mapped_column(Integer)
    iterations: Mapped[int] = mapped_column(Integer)
    converged: Mapped[bool] = mapped_column()
    rms: Mapped[float] = mapped_column(Measurement, nullable=True)
    # Fit statistics (migration 0006; NULL for versions written before it).
    chi2: Mapped[float] = mapped_column(Measurement, nullable=True)
    dof: Mapped[int | None] = mapped_column(Integer)
    error_scale: Mapped[float] = mapped_column(Measurement, nullable=True)
    rms_dof: Mapped[float] = mapped_column(Measurement, nullable=True)
    weak_link_entries: Mapped[int | None] = mapped_column(Integer)
    weights: Mapped[str | None] = mapped_column(BoundedText(limits.WEIGHTS))
    variance: Mapped[str | None] = mapped_column(BoundedText(limits.VARIANCE))
    content_hash: Mapped[str] = mapped_column(BoundedText(limits.CONTENT_HASH))
    input_fingerprint: Mapped[str] = mapped_column(BoundedText(limits.CONTENT_HASH))
    config: Mapped[dict] = mapped_column(JSONDoc)
    provenance: Mapped[dict] = mapped_column(JSONDoc)
    task_metadata: Mapped[dict] = mapped_column(JSONDoc)
    software_version: Mapped[str] = mapped_column(BoundedText(limits.SOFTWARE_VERSION))
    schema_revision: Mapped[str] = mapped_column(BoundedText(limits.SCHEMA_REVISION))
    user_name: Mapped[str] = mapped_column(BoundedText(limits.USER_NAME))
    host: Mapped[str] = mapped_column(BoundedText(limits.HOST))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class VersionExposure(Base):
    """A version's scale for one exposure (E), with its diagnostics."""

    __tablename__ = "version_exposure"
    __table_args__ = (
        ForeignKeyConstraint(
            ["instrument_id", "exposure_id"], ["exposure.instrument_id", "exposure.id"]
        ),
        # Slots: exp_index in [0, n_exposures) of the version (migration 0005 checks the
        # range), unique, all filled when the version is written: a version never gains rows.
        Index("uq_version_exposure_exp_index", "version_id", "exp_index", unique=True),
        # Which versions an exposure's statistics are inputs of (the protection triggers).
        Index("ix_version_exposure_instrument_id_exposure_id", "instrument_id", "exposure_id"),
    )

    version_id: Mapped[int] = mapped_column(ForeignKey("calibration_version.id"), primary_key=True)
    exposure_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    exp_index: Mapped[int] = mapped_column(Integer)
    instrument_id: Mapped[int] = mapped_column(Integer)
    scale: Mapped[float] = mapped_column(Measurement, nullable=True)
    rms: Mapped[float] = mapped_column(Measurement, nullable=True)
    n_used: Mapped[int] = mapped_column(Integer)
    flagged: Mapped[bool] = mapped_column()
    # Fit statistics (migration 0006; NULL for versions written before it). ``flags`` is a
    # bitmask over ``quality_flag.bit``; ``dof`` is a sum of (1 − leverage), so fractional.
    error: Mapped[float] = mapped_column(Measurement, nullable=True)
    chi2: Mapped[float] = mapped_column(Measurement, nullable=True)
    dof: Mapped[float] = mapped_column(Measurement, nullable=True)
    rms_dof: Mapped[float] = mapped_column(Measurement, nullable=True)
    flags: Mapped[int | None] = mapped_column(Integer)


class VersionRow(Base):
    """A version's relative response (G) of one row: a detector, or a detector's amplifier.

    ``amp_index``/``amp_name`` are NULL at DETECTOR level. ``row_index`` is the row's position
    in the solved matrix (camera order).
    """

    __tablename__ = "version_row"
    __table_args__ = (
        ForeignKeyConstraint(
            ["instrument_id", "detector_id"], ["detector.instrument_id", "detector.id"]
        ),
        Index("ix_version_row_instrument_id_detector_id", "instrument_id", "detector_id"),
    )

    version_id: Mapped[int] = mapped_column(ForeignKey("calibration_version.id"), primary_key=True)
    row_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    instrument_id: Mapped[int] = mapped_column(Integer)
    detector_id: Mapped[int] = mapped_column(Integer)
    amp_index: Mapped[int | None] = mapped_column(SmallInteger)
    amp_name: Mapped[str | None] = mapped_column(BoundedText(limits.AMP_NAME))
    scale: Mapped[float] = mapped_column(Measurement, nullable=True)
    rms: Mapped[float] = mapped_column(Measurement, nullable=True)
    n_used: Mapped[int] = mapped_column(Integer)
    flagged: Mapped[bool] = mapped_column()
    # Fit statistics (migration 0006; NULL for versions written before it). ``flags`` is a
    # bitmask over ``quality_flag.bit``; ``dof`` is a sum of (1 − leverage), so fractional.
    error: Mapped[float] = mapped_column(Measurement, nullable=True)
    chi2: Mapped[float] = mapped_column(Measurement, nullable=True)
    dof: Mapped[float] = mapped_column(Measurement, nullable=True)
    rms_dof: Mapped[float] = mapped_column(Measurement, nullable=True)
    flags: Mapped[int | None] = mapped_column(Integer)


class QualityFlag(Base):
    """The quality-flag vocabulary: bit ``bit`` of a row's or exposure's ``flags`` is ``name``.

    Filled by migration 0006 with :data:`calibreg.engine.quality.FLAGS` (a test compares them).
    """

    __tablename__ = "quality_flag"
    __table_args__ = (
        CheckConstraint("bit >= 0 AND bit < 16", name="bit"),
        CheckConstraint("applies_to IN ('row', 'exposure', 'both')", name="applies_to"),
    )

    bit: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(BoundedText(limits.FLAG_NAME), unique=True)
    applies_to: Mapped[str] = mapped_column(BoundedText(limits.FLAG_APPLIES_TO))
    description: Mapped[str] = mapped_column(Text)


class VersionRejected(Base):
    """A valid entry (row × exposure) that a version's robust fit rejected.

    ``entry_index`` numbers a version's rejected entries in ``[0, n_rejected)`` (sealed slots,
    like the scales); ``residual`` is the entry's log residual against the final model.
    """

    __tablename__ = "version_rejected"
    __table_args__ = (CheckConstraint("reason IN ('clipped', 'stuck_row')", name="reason"),)

    version_id: Mapped[int] = mapped_column(ForeignKey("calibration_version.id"), primary_key=True)
    entry_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    row_index: Mapped[int] = mapped_column(Integer)
    exp_index: Mapped[int] = mapped_column(Integer)
    residual: Mapped[float] = mapped_column(Measurement, nullable=True)
    reason: Mapped[str] = mapped_column(BoundedText(limits.REJECTION_REASON))


# --------------------------------------------------------------------------- publishing


class Tag(Base):
    """A named collection in which versions are certified, e.g. ``flat-norm/recommended``."""

    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(BoundedText(limits.TAG_NAME), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Certification(Base):
    """Version V is valid in tag T for ``[valid_begin, valid_end)`` (TAI ns; NULL = unbounded).

    Rows are never deleted: decertifying sets ``decertified_at``/``decertified_by`` once (a
    split inserts the remaining pieces as new rows pointing at the one they replace), so the
    table is the whole history of what each tag said and when. Active ranges of one
    (tag, instrument, filter) never overlap: a PostgreSQL exclusion constraint and a SQLite
    trigger, both created by the migrations, refuse it in the database itself.
    """

    __tablename__ = "certification"
    __table_args__ = (
        CheckConstraint(
            "valid_begin IS NULL OR valid_end IS NULL OR valid_begin < valid_end",
            name="valid_range",
        ),
        Index(
            "ix_certification_lookup",
            "tag_id",
            "instrument_id",
            "physical_filter",
            "valid_begin",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tag.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("calibration_version.id"), index=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instrument.id"))
    physical_filter: Mapped[str] = mapped_column(BoundedText(limits.PHYSICAL_FILTER))
    valid_begin: Mapped[int | None] = mapped_column(BigInteger)
    valid_end: Mapped[int | None] = mapped_column(BigInteger)
    certified_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    certified_by: Mapped[str] = mapped_column(BoundedText(limits.CERTIFIED_BY))
    decertified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decertified_by: Mapped[str | None] = mapped_column(BoundedText(limits.CERTIFIED_BY))
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("certification.id"))
    comparison: Mapped[dict | None] = mapped_column(JSONDoc)


class CertificationGeneration(Base):
    """One row: a counter bumped by every write that can change a lookup's answer.

    Triggers (migration 0007) add one for each statement that inserts or updates a
    certification and for each write to ``exposure``, in the writing transaction, so a read
    service can cache lookup answers under it and derive ETags from it
    (:mod:`calibreg.registry.generation`).
    """

    __tablename__ = "certification_generation"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
