"""``calibreg ingest butler``: a butler repository's flat inputs into the registry.

Read from the repository's registry, in this order (each step fails before anything is
written):

1. the instrument's **detector** dimension records, matched by id and full name to the camera
   ingested in calibreg (a detector the camera does not have, or names differently, is an
   error: the statistics would be pinned to the wrong sensor);
2. the **datasets** of type ``cpFlatProc_metadata`` (configurable) in the given collections
   (first match along them, as a pipeline would read them), optionally narrowed by a butler
   ``--where`` expression, with their data IDs expanded: their **exposure** dimension records
   are the exposures ingested, with every field calibreg keeps and the timespan exact in TAI
   nanoseconds (the butler's own representation);
3. the datasets' **files**, located through the butler's datastore and parsed by calibreg's
   PropertyList reader (:func:`calibreg.formats.read_propertylist`), with the exposure and
   detector of each taken from its data ID, not its file name. LSST's C++ ``daf_base`` cannot
   be installed here, so the butler cannot hand the PropertyLists over as objects. Parsing is
   spread over worker processes for large repositories. A missing or malformed file fails the
   whole call with one line naming the file and the dataset id.

Then everything is written through :meth:`calibreg.Registry.ingest_inputs`: one transaction,
one ingest batch, idempotent (reading the same datasets again changes nothing), conflicts
refused unless ``replace``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from calibreg.butler._lsst import daf_butler, open_butler, timespan_tai_ns
from calibreg.domain.jsonable import dumps
from calibreg.errors import CalibregError, InputError, NotFoundError

if TYPE_CHECKING:
    from calibreg.client import Registry
    from calibreg.domain.reports import IngestReport

__all__ = ["DEFAULT_DATASET_TYPE", "ButlerInputs", "ingest_butler", "read_butler_inputs"]

#: The dataset type cp_pipe's flat normalization reads (cpFlatMeasure's output metadata).
DEFAULT_DATASET_TYPE = "cpFlatProc_metadata"

#: Files below which parsing stays in this process (worker start-up costs ~1 s).
_PARALLEL_MIN_FILES = 400

Progress = Callable[[int, int], None]


@dataclasses.dataclass
class ButlerInputs:
    """What one butler query brought, ready for :meth:`calibreg.Registry.ingest_inputs`.

    Attributes
    ----------
    source
        ``butler:<repo>`` with the dataset type, collections and ``where`` (the batch source).
    sha256
        Content hash over the exposure records and every file's bytes, in dataset order.
    detectors
        The instrument's detector records (``id``, ``full_name``, ``purpose``...).
    exposures
        Exposure records in :func:`calibreg.formats.read_exposures`' columns.
    stats
        Statistics rows, with ``source`` naming each row's file.
    n_datasets
        Datasets (files) read.
    options
        What the call asked for (repository, collections, where, dataset type).
    """

    source: str
    sha256: str
    detectors: pd.DataFrame
    exposures: pd.DataFrame
    stats: pd.DataFrame
    n_datasets: int
    options: dict[str, Any]


def read_butler_inputs(
    repo: str,
    *,
    instrument: str,
    collections: Sequence[str],
    where: str | None = None,
    dataset_type: str = DEFAULT_DATASET_TYPE,
    jobs: int | None = None,
    progress: Progress | None = None,
    camera: pd.DataFrame | None = None,
) -> ButlerInputs:
    """Read detector and exposure records and the statistics datasets from a repository.

    Parameters
    ----------
    repo
        The repository (directory or ``butler.yaml``), opened read-only.
    instrument
        The butler instrument name (``LSSTCam``).
    collections
        Collections to search, in order (first match wins, as for a pipeline's inputs).
    where
        A butler query expression narrowing the datasets, e.g.
        ``"exposure.observation_type = 'flat' AND physical_filter = 'r_57'"``.
    dataset_type
        The statistics dataset type; its dimensions must include exposure and detector.
    jobs
        Worker processes for parsing files (default: the machine's cores; 1: no workers).
    progress
        Called as ``progress(files_done, files_total)`` while files are parsed.
    camera
        The registry's detectors of the instrument (``id``, ``name``): when given, the butler's
        detector records are matched against them (`match_detectors`) before any file is read.

    Returns
    -------
    ButlerInputs

    Raises
    ------
    ButlerUnavailableError
        Without the middleware.
    InputError
        An unknown dataset type or collection, a bad ``where``, no datasets, a missing or
        malformed file (naming the file and the dataset id).
    CalibregError
        An unreadable repository.
    """
    collections = [c for c in collections if c]
    if not collections:
        raise InputError("--collections", "name at least one collection to read from")
    butler = open_butler(repo, writeable=False)
    source = f"butler:{repo} {dataset_type} in {','.join(collections)}" + (
        f" where {where}" if where else ""
    )
    detectors = _detector_records(butler, instrument, source)
    if camera is not None:
        match_detectors(detectors, camera, instrument, source)
    refs = _query_datasets(butler, dataset_type, collections, instrument, where, source)
    exposures = _exposure_records(refs, instrument)
    stats, digests = _read_files(butler, refs, source, jobs=jobs, progress=progress)
    sha = hashlib.sha256()
    sha.update(dumps(exposures).encode())
    for digest in digests:
        sha.update(digest.encode())
    return ButlerInputs(
        source=source,
        sha256=sha.hexdigest(),
        detectors=detectors,
        exposures=exposures,
        stats=stats,
        n_datasets=len(refs),
        options={
            "via": "butler",
            "repo": str(repo),
            "collections": collections,
            "where": where,
            "dataset_type": dataset_type,
            "datasets": len(refs),
        },
    )


def ingest_butler(
    registry: Registry,
    repo: str,
    *,
    instrument: str,
    collections: Sequence[str],
    where: str | None = None,
    dataset_type: str = DEFAULT_DATASET_TYPE,
    replace: bool = False,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest a repository's exposures and statistics datasets (one transaction, one batch).

    The instrument's camera must be in the registry already: every butler detector record
    must match one of its detectors (same id, same full name). See `read_butler_inputs` for
    the other parameters.

    Returns
    -------
    IngestReport
        Kind ``stats``; ``n_rows`` counts exposure records plus statistics rows.

    Raises
    ------
    NotFoundError
        If the registry has no camera for the instrument.
    InputError
        A detector of the butler unknown to the camera, and everything `read_butler_inputs`
        and :meth:`calibreg.Registry.ingest_inputs` raise.
    ConflictError
        If stored exposures or statistics differ and ``replace`` is false.
    """
    daf_butler()  # without the middleware, say so before anything else
    camera = registry.detectors(instrument) if _has_instrument(registry, instrument) else None
    if camera is None or camera.empty:
        raise NotFoundError(
            f"instrument {instrument!r} has no camera in the registry: ingest it first "
            "(calibreg ingest camera FILE|POLICY_DIR)"
        )
    inputs = read_butler_inputs(
        repo,
        instrument=instrument,
        collections=collections,
        where=where,
        dataset_type=dataset_type,
        jobs=jobs,
        progress=progress,
        camera=camera,
    )
    return registry.ingest_inputs(
        inputs.exposures,
        inputs.stats,
        instrument=instrument,
        source=inputs.source,
        sha256=inputs.sha256,
        replace=replace,
        options={**inputs.options, "detectors_matched": len(inputs.detectors)},
    )


def _has_instrument(registry: Registry, instrument: str) -> bool:
    known = registry.instruments()
    return not known.empty and instrument in set(known["instrument"])


def match_detectors(
    butler_detectors: pd.DataFrame, camera: pd.DataFrame, instrument: str, source: str
) -> None:
    """Refuse butler detector records that the ingested camera does not have as they are.

    Raises
    ------
    InputError
        For the first butler detector whose id is not in the camera, or whose full name
        differs from the camera's.
    """
    names = dict(zip(camera["id"].astype(int), camera["name"], strict=True))
    for rec in butler_detectors.itertuples(index=False):
        if int(rec.id) not in names:
            raise InputError(
                source,
                f"butler detector {rec.id} ({rec.full_name}) of {instrument} is not in the "
                "camera ingested in calibreg",
                field="detector",
            )
        if names[int(rec.id)] != rec.full_name:
            raise InputError(
                source,
                f"butler detector {rec.id} is {rec.full_name}, but the camera ingested in "
                f"calibreg calls it {names[int(rec.id)]}",
                field="detector",
            )


# --------------------------------------------------------------------------- butler queries
def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _detector_records(butler: Any, instrument: str, source: str) -> pd.DataFrame:
    try:
        records = butler.query_dimension_records(
            "detector", instrument=instrument, limit=None, explain=False
        )
    except Exception as err:  # unknown instrument and friends
        raise InputError(
            source, f"cannot read detectors of {instrument}: {_one_line(err)}"
        ) from None
    if not records:
        raise InputError(source, f"the butler has no detector records for instrument {instrument}")
    rows = [
        {
            "id": int(r.id),
            "full_name": r.full_name,
            "raft": getattr(r, "raft", None),
            "name_in_raft": getattr(r, "name_in_raft", None),
            "purpose": getattr(r, "purpose", None),
        }
        for r in records
    ]
    return pd.DataFrame(rows).sort_values("id", ignore_index=True)


def _query_datasets(
    butler: Any,
    dataset_type: str,
    collections: list[str],
    instrument: str,
    where: str | None,
    source: str,
) -> list[Any]:
    try:
        dtype = butler.get_dataset_type(dataset_type)
    except Exception:
        raise InputError(source, f"the butler has no dataset type {dataset_type!r}") from None
    dims = set(dtype.dimensions.names)
    if not {"exposure", "detector"} <= dims:
        raise InputError(
            source,
            f"dataset type {dataset_type} has dimensions {sorted(dims)}; "
            "statistics need exposure and detector",
        )
    try:
        refs = butler.query_datasets(
            dataset_type,
            collections=collections,
            where=where or "",
            instrument=instrument,
            with_dimension_records=True,
            find_first=True,
            limit=None,
            explain=False,
        )
    except Exception as err:  # bad expression, unknown collection...
        raise InputError(source, f"the butler query failed: {_one_line(err)}") from None
    if not refs:
        raise InputError(
            source, f"no {dataset_type} datasets of {instrument} found there: nothing to ingest"
        )
    return sorted(refs, key=lambda r: (int(r.dataId["exposure"]), int(r.dataId["detector"])))


def _exposure_records(refs: list[Any], instrument: str) -> pd.DataFrame:
    """Return the datasets' exposure records in `read_exposures`' columns (TAI ns times)."""
    seen: dict[int, Any] = {}
    for ref in refs:
        rec = ref.dataId.records["exposure"]
        seen.setdefault(int(rec.id), rec)
    rows = []
    for exp_id in sorted(seen):
        rec = seen[exp_id]
        begin, end = timespan_tai_ns(rec.timespan)
        rows.append(
            {
                "instrument": instrument,
                "id": exp_id,
                "physical_filter": rec.physical_filter,
                "obs_id": rec.obs_id,
                "observation_type": rec.observation_type,
                "observation_reason": getattr(rec, "observation_reason", None),
                "science_program": rec.science_program,
                "group": _group(rec),
                "target_name": rec.target_name,
                "day_obs": getattr(rec, "day_obs", None),
                "seq_num": rec.seq_num,
                "exposure_time": rec.exposure_time,
                "dark_time": rec.dark_time,
                "timespan_begin": begin,
                "timespan_end": end,
            }
        )
    frame = pd.DataFrame(rows)
    for col in ("day_obs", "seq_num", "timespan_begin", "timespan_end"):
        frame[col] = frame[col].astype("Int64")
    for col in ("exposure_time", "dark_time"):
        frame[col] = frame[col].astype(float)
    frame["id"] = frame["id"].astype("int64")
    return frame


def _group(rec: Any) -> str | None:
    """Return the exposure's group (a dimension since universe 6, a field before)."""
    for name in ("group", "group_name"):
        value = getattr(rec, name, None)
        if value is not None:
            return str(value)
    return None


# --------------------------------------------------------------------------- files
def _read_files(
    butler: Any,
    refs: list[Any],
    source: str,
    *,
    jobs: int | None,
    progress: Progress | None,
) -> tuple[pd.DataFrame, list[str]]:
    try:
        uris = butler.get_many_uris(refs)
    except Exception as err:
        raise InputError(source, f"cannot locate the dataset files: {_one_line(err)}") from None
    items = []
    for ref in refs:
        uri = uris[ref].primaryURI
        if uri is None:
            raise InputError(source, f"dataset {ref.id} has no file in the datastore")
        items.append((str(ref.id), int(ref.dataId["exposure"]), int(ref.dataId["detector"]), uri))
    local = all(uri.isLocal for *_, uri in items)
    jobs = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    total = len(items)
    if not local:
        with_paths = []
        for ref_id, exp, det, uri in items:
            with uri.as_local() as tmp:
                with_paths.append(_read_chunk([(ref_id, exp, det, tmp.ospath, str(uri))]))
            if progress:
                progress(len(with_paths), total)
        results = with_paths
    else:
        work = [(ref_id, exp, det, uri.ospath, uri.ospath) for ref_id, exp, det, uri in items]
        results = _parse(work, jobs, progress)
    frames, digests = [], []
    for frame, chunk_digests, error in results:
        if error is not None:
            raise InputError(error[0], error[1], row=error[2], field=error[3])
        frames.append(frame)
        digests.extend(chunk_digests)
    return pd.concat(frames, ignore_index=True), digests


def _parse(
    work: list[tuple[str, int, int, str, str]], jobs: int, progress: Progress | None
) -> list[tuple[pd.DataFrame | None, list[str], tuple | None]]:
    total = len(work)
    if jobs == 1 or total < _PARALLEL_MIN_FILES:
        size = max(1, min(500, total // 20 or 1))
        out = []
        for start in range(0, total, size):
            out.append(_read_chunk(work[start : start + size]))
            if progress:
                progress(min(start + size, total), total)
            if out[-1][2] is not None:
                break
        return out
    import multiprocessing

    size = max(50, min(1000, total // (jobs * 8) or 1))
    chunks = [work[start : start + size] for start in range(0, total, size)]
    out = []
    # spawn: workers import only the readers, never inherit the butler's open connections.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        for result in pool.map(_read_chunk, chunks):
            out.append(result)
            if progress:
                progress(min(len(out) * size, total), total)
            if result[2] is not None:
                pool.shutdown(cancel_futures=True)
                break
    return out


def _read_chunk(
    items: list[tuple[str, int, int, str, str]],
) -> tuple[pd.DataFrame | None, list[str], tuple | None]:
    """Parse files with calibreg's PropertyList reader (runs in worker processes).

    Errors come back as plain tuples: exceptions with keyword-only fields do not cross a
    process boundary intact.
    """
    from calibreg.formats import read_propertylist

    frames, digests, sources = [], [], []
    for ref_id, exp, det, path, shown in items:
        where = f"{shown} (dataset {ref_id}, exposure {exp}, detector {det})"
        try:
            with open(path, "rb") as stream:
                digests.append(hashlib.sha256(stream.read()).hexdigest())
            frame = read_propertylist(path, exposure=exp, detector=det)
        except FileNotFoundError:
            return None, digests, (where, "file does not exist", None, None)
        except OSError as err:
            return None, digests, (where, f"cannot read file: {err.strerror or err}", None, None)
        except InputError as err:
            return None, digests, (where, err.reason, err.row, err.field)
        except CalibregError as err:  # pragma: no cover - readers raise InputError
            return None, digests, (where, str(err), None, None)
        frames.append(frame)
        sources.append(shown)
    out = pd.concat(frames, ignore_index=True)
    out["source"] = np.repeat(np.asarray(sources, dtype=object), [len(f) for f in frames])
    return out, digests, None
