"""The registry's tables (SQLAlchemy Core, declared as classes: see :mod:`calibreg.db.base`).

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

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    Text,
    UniqueConstraint,
)

from calibreg.db.base import Base
from calibreg.db.types import BoundedText, Float64, JSONDoc, Measurement, UTCDateTime, utcnow
from calibreg.domain import limits
from calibreg.domain.vocabulary import Level, Method


class Instrument(Base):
    """A camera, e.g. ``LSSTCam``."""

    __tablename__ = "instrument"

    id = Column(Integer, primary_key=True, autoincrement=True)
    name = Column(BoundedText(limits.INSTRUMENT_NAME), unique=True, nullable=False)
    source_format = Column(BoundedText(limits.SOURCE_FORMAT), nullable=True)
    created_at = Column(UTCDateTime, default=utcnow, nullable=False)


class IngestBatch(Base):
    """One ingest call: what was read, its content hash, what it changed, who and when."""

    __tablename__ = "ingest_batch"
    __table_args__ = (
        CheckConstraint("kind IN ('camera', 'exposures', 'stats')", name="kind"),
        CheckConstraint("n_rows >= 0", name="n_rows"),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    kind = Column(BoundedText(limits.INGEST_KIND), nullable=False)
    instrument_id = Column(ForeignKey("instrument.id"), nullable=True)
    source = Column(Text, nullable=False)
    sha256 = Column(BoundedText(limits.SHA256), index=True, nullable=False)
    n_rows = Column(BigInteger, nullable=False)
    n_inserted = Column(BigInteger, default=0, nullable=False)
    n_replaced = Column(BigInteger, default=0, nullable=False)
    n_unchanged = Column(BigInteger, default=0, nullable=False)
    started_at = Column(UTCDateTime, nullable=False)
    finished_at = Column(UTCDateTime, nullable=False)
    user_name = Column(BoundedText(limits.USER_NAME), nullable=False)
    host = Column(BoundedText(limits.HOST), nullable=False)
    software_version = Column(BoundedText(limits.SOFTWARE_VERSION), nullable=False)
    options = Column(JSONDoc, nullable=True)


class Detector(Base):
    """A detector of an instrument, with its focal-plane placement."""

    __tablename__ = "detector"
    __table_args__ = (
        UniqueConstraint("instrument_id", "name"),
        CheckConstraint(
            "purpose IN ('SCIENCE', 'FOCUS', 'GUIDER', 'WAVEFRONT', 'OTHER')", name="purpose"
        ),
    )

    instrument_id = Column(ForeignKey("instrument.id"), primary_key=True)
    id = Column(Integer, primary_key=True, autoincrement=False)
    name = Column(BoundedText(limits.DETECTOR_NAME), nullable=False)
    serial = Column(BoundedText(limits.DETECTOR_SERIAL), nullable=True)
    physical_type = Column(BoundedText(limits.PHYSICAL_TYPE), nullable=True)
    purpose = Column(BoundedText(limits.DETECTOR_PURPOSE), nullable=False)
    bbox_x0 = Column(Integer, nullable=False)
    bbox_y0 = Column(Integer, nullable=False)
    bbox_x1 = Column(Integer, nullable=False)
    bbox_y1 = Column(Integer, nullable=False)
    offset_x = Column(Measurement, nullable=True)
    offset_y = Column(Measurement, nullable=True)
    offset_z = Column(Measurement, nullable=True)
    yaw = Column(Measurement, nullable=True)
    pitch = Column(Measurement, nullable=True)
    roll = Column(Measurement, nullable=True)
    pixel_size_x = Column(Measurement, nullable=True)
    pixel_size_y = Column(Measurement, nullable=True)
    n_amplifiers = Column(SmallInteger, nullable=False)
    batch_id = Column(ForeignKey("ingest_batch.id"), nullable=False)


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

    instrument_id = Column(Integer, primary_key=True)
    detector_id = Column(Integer, primary_key=True)
    amp_index = Column(SmallInteger, primary_key=True, autoincrement=False)
    name = Column(BoundedText(limits.AMP_NAME), nullable=False)
    bbox_x0 = Column(Integer, nullable=False)
    bbox_y0 = Column(Integer, nullable=False)
    bbox_width = Column(Integer, nullable=False)
    bbox_height = Column(Integer, nullable=False)
    gain = Column(Measurement, nullable=True)
    read_noise = Column(Measurement, nullable=True)
    saturation = Column(Measurement, nullable=True)


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

    instrument_id = Column(ForeignKey("instrument.id"), primary_key=True)
    id = Column(BigInteger, primary_key=True, autoincrement=False)
    physical_filter = Column(BoundedText(limits.PHYSICAL_FILTER), nullable=False)
    obs_id = Column(BoundedText(limits.OBS_ID), nullable=True)
    observation_type = Column(BoundedText(limits.OBSERVATION_TYPE), nullable=True)
    observation_reason = Column(BoundedText(limits.OBSERVATION_REASON), nullable=True)
    science_program = Column(BoundedText(limits.SCIENCE_PROGRAM), nullable=True)
    group_name = Column(BoundedText(limits.GROUP_NAME), nullable=True)
    target_name = Column(BoundedText(limits.TARGET_NAME), nullable=True)
    day_obs = Column(Integer, nullable=True)
    seq_num = Column(Integer, nullable=True)
    exposure_time = Column(Float64, nullable=True)
    dark_time = Column(Float64, nullable=True)
    timespan_begin = Column(BigInteger, nullable=True)
    timespan_end = Column(BigInteger, nullable=True)
    batch_id = Column(ForeignKey("ingest_batch.id"), nullable=False)


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

    instrument_id = Column(Integer, primary_key=True)
    exposure_id = Column(BigInteger, primary_key=True)
    detector_id = Column(Integer, primary_key=True)
    median = Column(Measurement, nullable=True)
    sigma = Column(Measurement, nullable=True)
    n_pixels = Column(BigInteger, nullable=False)
    #: The ingest batch that wrote the row (provenance; deliberately not a foreign key: on
    #: PostgreSQL every FK costs a per-row trigger during COPY, and batches are never deleted).
    batch_id = Column(Integer, nullable=False)


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

    instrument_id = Column(Integer, primary_key=True)
    exposure_id = Column(BigInteger, primary_key=True)
    detector_id = Column(Integer, primary_key=True)
    amp_index = Column(SmallInteger, primary_key=True, autoincrement=False)
    median = Column(Measurement, nullable=True)
    sigma = Column(Measurement, nullable=True)
    n_pixels = Column(BigInteger, nullable=False)
    #: The ingest batch that wrote the row (provenance; deliberately not a foreign key: on
    #: PostgreSQL every FK costs a per-row trigger during COPY, and batches are never deleted).
    batch_id = Column(Integer, nullable=False)


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

    id = Column(Integer, primary_key=True, autoincrement=True)
    instrument_id = Column(ForeignKey("instrument.id"), nullable=False)
    physical_filter = Column(BoundedText(limits.PHYSICAL_FILTER), nullable=False)
    level = Column(BoundedText(limits.LEVEL), nullable=False)
    selection_key = Column(BoundedText(limits.SELECTION_KEY), nullable=False)
    selection = Column(JSONDoc, nullable=False)
    created_at = Column(UTCDateTime, default=utcnow, nullable=False)


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

    id = Column(Integer, primary_key=True, autoincrement=True)
    quantum_id = Column(ForeignKey("quantum.id"), nullable=False)
    seq = Column(Integer, nullable=False)
    instrument_id = Column(ForeignKey("instrument.id"), nullable=False)
    physical_filter = Column(BoundedText(limits.PHYSICAL_FILTER), nullable=False)
    level = Column(BoundedText(limits.LEVEL), nullable=False)
    method = Column(BoundedText(limits.METHOD), nullable=False)
    n_exposures = Column(Integer, nullable=False)
    n_rows = Column(Integer, nullable=False)
    n_missing = Column(Integer, nullable=False)
    n_rejected = Column(Integer, nullable=False)
    iterations = Column(Integer, nullable=False)
    converged = Column(Boolean, nullable=False)
    rms = Column(Measurement, nullable=True)
    # Fit statistics (migration 0006; NULL for versions written before it).
    chi2 = Column(Measurement, nullable=True)
    dof = Column(Integer, nullable=True)
    error_scale = Column(Measurement, nullable=True)
    rms_dof = Column(Measurement, nullable=True)
    weak_link_entries = Column(Integer, nullable=True)
    weights = Column(BoundedText(limits.WEIGHTS), nullable=True)
    variance = Column(BoundedText(limits.VARIANCE), nullable=True)
    content_hash = Column(BoundedText(limits.CONTENT_HASH), nullable=False)
    input_fingerprint = Column(BoundedText(limits.CONTENT_HASH), nullable=False)
    config = Column(JSONDoc, nullable=False)
    provenance = Column(JSONDoc, nullable=False)
    task_metadata = Column(JSONDoc, nullable=False)
    software_version = Column(BoundedText(limits.SOFTWARE_VERSION), nullable=False)
    schema_revision = Column(BoundedText(limits.SCHEMA_REVISION), nullable=False)
    user_name = Column(BoundedText(limits.USER_NAME), nullable=False)
    host = Column(BoundedText(limits.HOST), nullable=False)
    started_at = Column(UTCDateTime, nullable=False)
    finished_at = Column(UTCDateTime, nullable=False)
    created_at = Column(UTCDateTime, default=utcnow, nullable=False)


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

    version_id = Column(ForeignKey("calibration_version.id"), primary_key=True)
    exposure_id = Column(BigInteger, primary_key=True)
    exp_index = Column(Integer, nullable=False)
    instrument_id = Column(Integer, nullable=False)
    scale = Column(Measurement, nullable=True)
    rms = Column(Measurement, nullable=True)
    n_used = Column(Integer, nullable=False)
    flagged = Column(Boolean, nullable=False)
    # Fit statistics (migration 0006; NULL for versions written before it). ``flags`` is a
    # bitmask over ``quality_flag.bit``; ``dof`` is a sum of (1 − leverage), so fractional.
    error = Column(Measurement, nullable=True)
    chi2 = Column(Measurement, nullable=True)
    dof = Column(Measurement, nullable=True)
    rms_dof = Column(Measurement, nullable=True)
    flags = Column(Integer, nullable=True)


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

    version_id = Column(ForeignKey("calibration_version.id"), primary_key=True)
    row_index = Column(Integer, primary_key=True, autoincrement=False)
    instrument_id = Column(Integer, nullable=False)
    detector_id = Column(Integer, nullable=False)
    amp_index = Column(SmallInteger, nullable=True)
    amp_name = Column(BoundedText(limits.AMP_NAME), nullable=True)
    scale = Column(Measurement, nullable=True)
    rms = Column(Measurement, nullable=True)
    n_used = Column(Integer, nullable=False)
    flagged = Column(Boolean, nullable=False)
    # Fit statistics (migration 0006; NULL for versions written before it). ``flags`` is a
    # bitmask over ``quality_flag.bit``; ``dof`` is a sum of (1 − leverage), so fractional.
    error = Column(Measurement, nullable=True)
    chi2 = Column(Measurement, nullable=True)
    dof = Column(Measurement, nullable=True)
    rms_dof = Column(Measurement, nullable=True)
    flags = Column(Integer, nullable=True)


class QualityFlag(Base):
    """The quality-flag vocabulary: bit ``bit`` of a row's or exposure's ``flags`` is ``name``.

    Filled by migration 0006 with :data:`calibreg.engine.quality.FLAGS` (a test compares them).
    """

    __tablename__ = "quality_flag"
    __table_args__ = (
        CheckConstraint("bit >= 0 AND bit < 16", name="bit"),
        CheckConstraint("applies_to IN ('row', 'exposure', 'both')", name="applies_to"),
    )

    bit = Column(Integer, primary_key=True, autoincrement=False)
    name = Column(BoundedText(limits.FLAG_NAME), unique=True, nullable=False)
    applies_to = Column(BoundedText(limits.FLAG_APPLIES_TO), nullable=False)
    description = Column(Text, nullable=False)


class VersionRejected(Base):
    """A valid entry (row × exposure) that a version's robust fit rejected.

    ``entry_index`` numbers a version's rejected entries in ``[0, n_rejected)`` (sealed slots,
    like the scales); ``residual`` is the entry's log residual against the final model.
    """

    __tablename__ = "version_rejected"
    __table_args__ = (CheckConstraint("reason IN ('clipped', 'stuck_row')", name="reason"),)

    version_id = Column(ForeignKey("calibration_version.id"), primary_key=True)
    entry_index = Column(Integer, primary_key=True, autoincrement=False)
    row_index = Column(Integer, nullable=False)
    exp_index = Column(Integer, nullable=False)
    residual = Column(Measurement, nullable=True)
    reason = Column(BoundedText(limits.REJECTION_REASON), nullable=False)


# --------------------------------------------------------------------------- publishing


class Tag(Base):
    """A named collection in which versions are certified, e.g. ``flat-norm/recommended``."""

    __tablename__ = "tag"

    id = Column(Integer, primary_key=True, autoincrement=True)
    name = Column(BoundedText(limits.TAG_NAME), unique=True, nullable=False)
    description = Column(Text, nullable=True)
    created_at = Column(UTCDateTime, default=utcnow, nullable=False)


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

    id = Column(Integer, primary_key=True, autoincrement=True)
    tag_id = Column(ForeignKey("tag.id"), nullable=False)
    version_id = Column(ForeignKey("calibration_version.id"), index=True, nullable=False)
    instrument_id = Column(ForeignKey("instrument.id"), nullable=False)
    physical_filter = Column(BoundedText(limits.PHYSICAL_FILTER), nullable=False)
    valid_begin = Column(BigInteger, nullable=True)
    valid_end = Column(BigInteger, nullable=True)
    certified_at = Column(UTCDateTime, nullable=False)
    certified_by = Column(BoundedText(limits.CERTIFIED_BY), nullable=False)
    decertified_at = Column(UTCDateTime, nullable=True)
    decertified_by = Column(BoundedText(limits.CERTIFIED_BY), nullable=True)
    replaces_id = Column(ForeignKey("certification.id"), nullable=True)
    comparison = Column(JSONDoc, nullable=True)


class CertificationGeneration(Base):
    """One row: a counter bumped by every write that can change a lookup's answer.

    Triggers (migration 0007) add one for each statement that inserts or updates a
    certification and for each write to ``exposure``, in the writing transaction, so a read
    service can cache lookup answers under it and derive ETags from it
    (:mod:`calibreg.registry.generation`).
    """

    __tablename__ = "certification_generation"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id = Column(Integer, primary_key=True, autoincrement=False)
    generation = Column(BigInteger, default=0, nullable=False)
