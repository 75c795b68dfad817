"""What the registry's writes report back: an ingest's counts, a new version's identity."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class IngestReport:
    """What one ingest call did.

    Attributes
    ----------
    kind
        ``camera``, ``exposures`` or ``stats``.
    source
        The file (or files) ingested, as given.
    instrument
        The instrument name(s) the rows belong to.
    n_rows, n_inserted, n_replaced, n_unchanged
        Rows read; rows written new; rows overwritten (``--replace``); rows already present
        with identical content.
    batch_id
        The ``ingest_batch`` row written, or ``None`` when nothing changed.
    """

    kind: str
    source: str
    instrument: str | None
    n_rows: int
    n_inserted: int
    n_replaced: int
    n_unchanged: int
    batch_id: int | None

    @property
    def changed(self) -> bool:
        """Whether the call wrote anything."""
        return self.batch_id is not None

    def message(self) -> str:
        """Return one line for a person."""
        if not self.changed:
            return (
                f"{self.source}: nothing changed ({self.n_unchanged} {self.kind} rows already "
                "present with identical content)"
            )
        return (
            f"{self.source}: batch {self.batch_id}: {self.n_inserted} inserted, "
            f"{self.n_replaced} replaced, {self.n_unchanged} unchanged ({self.kind})"
        )


@dataclasses.dataclass(frozen=True)
class PersistedVersion:
    """Identity of a freshly written calibration version.

    Attributes
    ----------
    id
        The version's global id.
    seq
        Its sequence number within its quantum (1, 2, ...).
    quantum_id
        The quantum it solves.
    content_hash
        sha256 of its labels and scales (:meth:`QuantumData.result_hash`).
    """

    id: int
    seq: int
    quantum_id: int
    content_hash: str


__all__ = ["IngestReport", "PersistedVersion"]
