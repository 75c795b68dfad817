"""The active validity ranges of a tag, held in memory by a read service (issue 12).

A lookup asks which active certification of (tag, instrument, filter) covers an instant, or an
exposure's timespan. The database answers that with one indexed query (:func:`tags.lookup
<calibreg.registry.tags.lookup>`), but a read service answering thousands of lookups a second
pays, on every miss of its answer cache, a pool checkout, the statement's execution and a round
trip to a server that shares its cores. The answer depends only on the tag's *active* ranges,
and those change only with the registry's certification generation
(:mod:`calibreg.registry.generation`: every certify, decertify and exposure write bumps it, in
the writing transaction). So a service keeps, per (instrument, tag), every active certification
of the tag (one query, labelled with the generation read *before* it) and answers by bisection,
as the conditions services of HEP experiments keep their intervals of validity in memory.

Active ranges of one (tag, instrument, filter) never overlap (the database refuses it), so
sorted by begin they are sorted by end too, and the ranges overlapping ``[begin, end)`` are one
slice found by two bisections. A filter whose ranges would overlap anyway is not indexed: its
lookups go to the database.

The index answers only what it can answer exactly as :func:`~calibreg.registry.tags.lookup`
does (the answer is built by the same :func:`~calibreg.registry.tags.answer`): one version
found, no ``as_of``, no explanation. Everything else (nothing certified, an ambiguous span, an
unknown instrument, tag or exposure, a filter that does not match the exposure's) returns
``None``, and the caller asks the database, which words the error.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, bindparam, select

from calibreg.db.models import Exposure, Instrument
from calibreg.registry import generation as generation_counter
from calibreg.registry.tags import active_statement, answer

_UNBOUNDED_BEGIN = float("-inf")
_UNBOUNDED_END = float("inf")

#: An exposure's filter and timespan, by instrument name and exposure id.
_SPAN = (
    select(Exposure.physical_filter, Exposure.timespan_begin, Exposure.timespan_end)
    .join(Instrument, Instrument.id == Exposure.instrument_id)
    .where(Instrument.name == bindparam("instrument"), Exposure.id == bindparam("exposure"))
)


class Ranges:
    """The active certifications of one (tag, instrument, filter), sorted by begin.

    Parameters
    ----------
    rows
        Lookup rows (:func:`calibreg.registry.tags.active_statement`) of one filter, ordered
        by begin, ``None`` (unbounded) first.

    Raises
    ------
    ValueError
        If two ranges overlap (the database's constraints never let that happen).
    """

    __slots__ = ("begins", "ends", "rows")

    def __init__(self, rows: Sequence[Any]) -> None:
        self.rows = list(rows)
        self.begins = [_UNBOUNDED_BEGIN if r.valid_begin is None else r.valid_begin for r in rows]
        self.ends = [_UNBOUNDED_END if r.valid_end is None else r.valid_end for r in rows]
        for i in range(1, len(self.rows)):
            if self.begins[i] < self.begins[i - 1] or self.ends[i - 1] > self.begins[i]:
                raise ValueError(
                    f"certifications {self.rows[i - 1].id} and {self.rows[i].id} overlap"
                )

    def over(self, begin: int, end: int) -> list[Any]:
        """Return the rows whose ``[valid_begin, valid_end)`` overlaps ``[begin, end)``, in order.

        Ranges beginning before ``end`` are a prefix, ranges ending after ``begin`` a suffix
        (ends are sorted because ranges do not overlap): the overlap is their intersection.
        """
        stop = bisect.bisect_left(self.begins, end)
        start = bisect.bisect_right(self.ends, begin)
        return self.rows[start:stop]


class _Entry:
    """The index of one (instrument, tag) at one generation (``None`` per unindexable filter)."""

    __slots__ = ("filters", "generation")

    def __init__(self, generation: int, filters: dict[str, Ranges | None]) -> None:
        self.generation = generation
        self.filters = filters


class ValidityIndex:
    """Lookups answered from the active validity ranges, kept per (instrument, tag) in memory.

    Parameters
    ----------
    engine
        The registry's engine (loads and exposure reads check a connection out of its pool).
    generation
        A callable returning the current certification generation cheaply (the registry's
        :meth:`~calibreg.client.Registry.watch_certification_generation`).
    max_keys
        The most (instrument, tag) pairs kept; the least recently used go first.

    Notes
    -----
    An entry is used while its generation is at least the current one. It is labelled with
    the generation read before its rows, so it may hold newer rows than its label says (then
    it is reloaded once more), never older ones.
    """

    def __init__(
        self, engine: Engine, generation: Callable[[], int], *, max_keys: int = 1024
    ) -> None:
        self.engine = engine
        self.generation = generation
        self.max_keys = max_keys
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        #: Loads made (for tests and the benchmark's report).
        self.loads = 0

    def lookup(
        self,
        instrument: str,
        physical_filter: str | None,
        tag: str,
        *,
        time_tai_ns: int | None = None,
        exposure: int | None = None,
        io: bool = True,
    ) -> dict[str, Any] | None:
        """Return what :func:`calibreg.registry.tags.lookup` answers, or ``None``.

        ``None`` when the index cannot give that answer itself (see the module docs); the
        caller then asks the database. With ``io=False`` it also gives ``None`` rather than
        read the database (a load at a new generation, an exposure's timespan): an event loop
        may then answer in line, and hand only the rest to a thread.
        """
        if (time_tai_ns is None) == (exposure is None):
            return None
        current = self.generation()
        span_end: int | None = None
        if exposure is not None:
            if not io:
                return None
            span = self._exposure_span(instrument, exposure)
            if span is None:
                return None
            exposure_filter, time_tai_ns, span_end = span
            if physical_filter is not None and physical_filter != exposure_filter:
                return None
            physical_filter = exposure_filter
        if physical_filter is None or time_tai_ns is None:
            return None
        if span_end is None or span_end <= time_tai_ns:
            span_end = time_tai_ns + 1  # an instant is the 1 ns span starting there
        filters = self._filters(current, instrument, tag, io=io)
        ranges = None if filters is None else filters.get(physical_filter)
        if ranges is None:
            return None
        hits = ranges.over(time_tai_ns, span_end)
        if not hits or any(h.version_id != hits[0].version_id for h in hits):
            return None
        return answer(
            hits[0], instrument, physical_filter, tag, time_tai_ns, span_end, exposure=exposure
        )

    def _exposure_span(self, instrument: str, exposure: int) -> tuple[str, int, int | None] | None:
        with self.engine.connect() as conn:
            row = conn.execute(_SPAN, {"instrument": instrument, "exposure": exposure}).first()
        if row is None or row.timespan_begin is None:
            return None
        end = None if row.timespan_end is None else int(row.timespan_end)
        return row.physical_filter, int(row.timespan_begin), end

    def _filters(
        self, current: int, instrument: str, tag: str, *, io: bool
    ) -> dict[str, Ranges | None] | None:
        key = (instrument, tag)
        entry = self._entries.get(key)
        if entry is not None and entry.generation >= current:
            return entry.filters
        if not io:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.generation < current:
                entry = self._load(instrument, tag)
                self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
        return entry.filters

    def _load(self, instrument: str, tag: str) -> _Entry:
        with self.engine.connect() as conn:
            at = generation_counter.current(conn)
            rows = conn.execute(active_statement(), {"instrument": instrument, "tag": tag}).all()
        self.loads += 1
        by_filter: dict[str, list[Any]] = {}
        for row in rows:
            by_filter.setdefault(row.physical_filter, []).append(row)
        filters: dict[str, Ranges | None] = {}
        for name, group in by_filter.items():
            try:
                filters[name] = Ranges(group)
            except ValueError:
                filters[name] = None  # never by the constraints; the database answers these
        return _Entry(at, filters)


__all__ = ["Ranges", "ValidityIndex"]
