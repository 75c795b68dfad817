"""``calibreg publish butler``: a calibration version into a butler repository.

What is written, in the run ``RUN`` (a butler RUN collection):

* the version's scales as a ``cpFlatNormScales`` dataset: storage class
  ``StructuredDataDict``, dimensions ``instrument`` and ``physical_filter``, content exactly the
  structure cp_pipe's ``CpFlatNormalizationTask`` writes (SPEC §5, built by
  :meth:`calibreg.Registry.cp_pipe`), so cp_pipe's flat combination reads it as its own;
* a sidecar ``cpFlatNormScales_calibreg`` dataset (same dimensions) with the calibreg version
  id, sequence number, content hash, input fingerprint, config and provenance, and the
  certifications it was published for, so that a butler user can trace the dataset back;
* the same identity, one line, as the run's collection documentation.

With ``tag``, the scales are also certified into the CALIBRATION collection ``C`` for exactly
the validity ranges the version holds in that calibreg tag (TAI nanoseconds, exact: the butler
stores the same representation), so that the butler's ``find_dataset(..., timespan=t)`` in C and
``calibreg lookup --time t --tag T`` name the same version at every t. (The dataset type is
registered as a calibration type when new, as certification requires, also when publishing
without a tag, so that a later publish can certify it; cp_pipe may have registered it in a
repository as a non-calibration type, which cannot be certified: then ``--tag`` is refused.)

All or nothing: the butler writes happen in one butler transaction, so an overlapping
certification already in C (the butler refuses it) leaves no run, dataset or file behind, and
dataset types registered by this call are removed again. calibreg itself is only read.
Publishing the same version into the same run again changes nothing (or only adds missing
certifications).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

from calibreg.butler._lsst import daf_butler, open_butler, tai_ns_timespan, timespan_tai_ns
from calibreg.domain.jsonable import jsonable
from calibreg.domain.provenance import SIDECAR_FIELDS
from calibreg.domain.quality import flag_report
from calibreg.errors import CalibregError, ConflictError, InputError, NotFoundError

if TYPE_CHECKING:
    from calibreg.client import Registry

__all__ = ["DEFAULT_SCALES_TYPE", "default_calibration_collection", "publish_butler"]

#: The dataset type cp_pipe's flat normalization writes and its flat combination reads.
DEFAULT_SCALES_TYPE = "cpFlatNormScales"
SIDECAR_SUFFIX = "_calibreg"
_DIMENSIONS = ("instrument", "physical_filter")


def default_calibration_collection(instrument: str, tag: str) -> str:
    """Return the CALIBRATION collection used when none is named: ``<instrument>/calib/<tag>``."""
    return f"{instrument}/calib/{tag}"


def publish_butler(
    registry: Registry,
    version_id: int,
    repo: str,
    *,
    run: str,
    tag: str | None = None,
    calibration_collection: str | None = None,
    dataset_type: str = DEFAULT_SCALES_TYPE,
) -> dict[str, Any]:
    """Write a version into a butler repository and, with ``tag``, certify it there.

    Parameters
    ----------
    registry
        The calibreg registry holding the version (only read).
    version_id
        The version to publish.
    repo
        The butler repository, opened writeable.
    run
        The RUN collection to write into (created if new).
    tag
        A calibreg tag in which the version is certified: its active validity ranges there
        become certifications in ``calibration_collection``.
    calibration_collection
        The butler CALIBRATION collection (created if new); default
        `default_calibration_collection`. Only with ``tag``.
    dataset_type
        The scales dataset type (the sidecar is ``<dataset_type>_calibreg``).

    Returns
    -------
    dict
        ``version_id``, ``repo``, ``run``, ``dataset_type``, ``dataset_id``, ``sidecar_id``,
        ``collection``, ``certified`` (``[begin, end]`` TAI ns pairs written now),
        ``already`` (ranges that were certified before), ``changed``.

    Raises
    ------
    ButlerUnavailableError
        Without the middleware.
    NotFoundError
        An unknown version, or a version not certified in ``tag``.
    InputError
        The butler lacks the instrument or filter, or a collection or dataset type of that
        name exists with another kind or definition.
    ConflictError
        An overlapping certification in the butler, or the run already holds another
        version's scales for this instrument and filter. Nothing was written.
    """
    daf_butler()  # without the middleware, say so before anything else
    if calibration_collection is not None and tag is None:
        raise InputError("--calibration-collection", "needs --tag (what to certify)")
    version = registry.version(version_id)
    instrument, physical_filter = version["instrument"], version["physical_filter"]
    ranges = _validity_ranges(registry, version_id, tag) if tag is not None else []
    collection = (
        None
        if tag is None
        else calibration_collection or default_calibration_collection(instrument, tag)
    )
    structure = registry.cp_pipe(version_id)
    sidecar = _sidecar(registry, version, tag, collection, ranges)
    butler = open_butler(repo, writeable=True)
    data_id = {"instrument": instrument, "physical_filter": physical_filter}
    _check_data_id(butler, data_id, repo)
    _check_collections(butler, run, collection, repo)
    existing = _existing(butler, dataset_type, run, data_id, version, repo)
    created: list[str] = []
    try:
        scales_type = _ensure_dataset_type(
            butler,
            dataset_type,
            calibration=True,  # so that it can be certified, now or by a later publish
            certify=tag is not None,
            created=created,
            repo=repo,
        )
        sidecar_type = _ensure_dataset_type(
            butler,
            dataset_type + SIDECAR_SUFFIX,
            calibration=False,
            certify=False,
            created=created,
            repo=repo,
        )
        result = _write(
            butler,
            scales_type,
            sidecar_type,
            structure=structure,
            sidecar=sidecar,
            data_id=data_id,
            run=run,
            collection=collection,
            ranges=ranges,
            existing=existing,
            repo=repo,
        )
    except BaseException:
        _remove_dataset_types(butler, created)
        raise
    return {
        "version_id": version_id,
        "repo": str(repo),
        "run": run,
        "dataset_type": dataset_type,
        "instrument": instrument,
        "physical_filter": physical_filter,
        "collection": collection,
        "tag": tag,
        **result,
    }


# --------------------------------------------------------------------------- calibreg side
def _validity_ranges(registry: Registry, version_id: int, tag: str) -> list[tuple[int, int | None]]:
    ranges = sorted(
        (int(c["valid_begin"]), None if c["valid_end"] is None else int(c["valid_end"]))
        for c in registry.certifications(tag)
        if int(c["version_id"]) == version_id
    )
    if not ranges:
        raise NotFoundError(
            f"version {version_id} is not certified in tag {tag!r}: certify it first "
            "(calibreg certify V --tag T --begin ...)"
        )
    return ranges


def _sidecar(
    registry: Registry,
    version: dict[str, Any],
    tag: str | None,
    collection: str | None,
    ranges: list[tuple[int, int | None]],
) -> dict[str, Any]:
    return jsonable(
        {
            "calibreg_version_id": int(version["id"]),
            "instrument": version["instrument"],
            "physical_filter": version["physical_filter"],
            **{key: version.get(key) for key in SIDECAR_FIELDS},
            "database": registry.database,
            "tag": tag,
            "calibration_collection": collection,
            "validity_tai_ns": [[b, e] for b, e in ranges],
            "quality_flags": flag_report(version.get("flagged")),
            "published_at": dt.datetime.now(dt.UTC),
        }
    )


# --------------------------------------------------------------------------- butler side
def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check_data_id(butler: Any, data_id: dict[str, str], repo: str) -> None:
    try:
        butler.registry.expandDataId(data_id)
    except Exception as err:
        raise InputError(
            f"butler:{repo}",
            f"the butler has no {data_id['instrument']} physical_filter "
            f"{data_id['physical_filter']!r} ({_one_line(err)})",
        ) from None


def _collection_type(butler: Any, name: str) -> Any | None:
    daf = daf_butler()
    try:
        return butler.registry.getCollectionType(name)
    except daf.MissingCollectionError:
        return None


def _check_collections(butler: Any, run: str, collection: str | None, repo: str) -> None:
    daf = daf_butler()
    kind = _collection_type(butler, run)
    if kind is not None and kind != daf.CollectionType.RUN:
        raise InputError(f"butler:{repo}", f"collection {run!r} is a {kind.name}, not a RUN")
    if collection is not None:
        kind = _collection_type(butler, collection)
        if kind is not None and kind != daf.CollectionType.CALIBRATION:
            raise InputError(
                f"butler:{repo}", f"collection {collection!r} is a {kind.name}, not a CALIBRATION"
            )


def _existing(
    butler: Any, dataset_type: str, run: str, data_id: dict, version: dict, repo: str
) -> Any | None:
    """Return the scales already in ``run`` for this data ID (refused if another version's)."""
    if _collection_type(butler, run) is None:
        return None
    try:
        butler.get_dataset_type(dataset_type)
        ref = butler.find_dataset(dataset_type, data_id, collections=run)
    except Exception:
        return None
    if ref is None:
        return None
    try:
        side = butler.get(dataset_type + SIDECAR_SUFFIX, data_id, collections=run)
    except Exception:
        side = {}
    same = side.get("calibreg_version_id") == int(version["id"]) and side.get(
        "content_hash"
    ) == version.get("content_hash")
    if not same:
        raise ConflictError(
            f"butler:{repo}: run {run!r} already holds {dataset_type} for "
            f"{data_id['instrument']} {data_id['physical_filter']} "
            f"(calibreg version {side.get('calibreg_version_id', 'unknown')}); "
            "publish into a new run"
        )
    return ref


def _ensure_dataset_type(
    butler: Any, name: str, *, calibration: bool, certify: bool, created: list[str], repo: str
) -> Any:
    daf = daf_butler()
    wanted = daf.DatasetType(
        name,
        _DIMENSIONS,
        "StructuredDataDict",
        universe=butler.dimensions,
        isCalibration=calibration,
    )
    try:
        have = butler.get_dataset_type(name)
    except daf.MissingDatasetTypeError:
        butler.registry.registerDatasetType(wanted)
        created.append(name)
        return wanted
    if set(have.dimensions.names) != set(wanted.dimensions.names) or (
        have.storageClass_name != "StructuredDataDict"
    ):
        raise InputError(
            f"butler:{repo}",
            f"dataset type {name} exists as {have}; expected dimensions {list(_DIMENSIONS)} "
            "and storage class StructuredDataDict",
        )
    if certify and not have.isCalibration():
        raise InputError(
            f"butler:{repo}",
            f"dataset type {name} is registered as a non-calibration type, which cannot be "
            "certified; publish under another --dataset-type",
        )
    return have


def _remove_dataset_types(butler: Any, names: list[str]) -> None:
    for name in reversed(names):
        # best effort: the transaction already undid every dataset of these types
        with contextlib.suppress(Exception):
            butler.registry.removeDatasetType(name)


def _write(
    butler: Any,
    scales_type: Any,
    sidecar_type: Any,
    *,
    structure: dict[str, Any],
    sidecar: dict[str, Any],
    data_id: dict[str, str],
    run: str,
    collection: str | None,
    ranges: list[tuple[int, int | None]],
    existing: Any | None,
    repo: str,
) -> dict[str, Any]:
    daf = daf_butler()
    already, todo = _split_ranges(butler, scales_type.name, collection, existing, ranges)
    if existing is not None and not todo:
        return {
            "dataset_id": str(existing.id),
            "sidecar_id": None,
            "certified": [],
            "already": [list(r) for r in already],
            "changed": False,
        }
    doc = (
        f"calibreg version {sidecar['calibreg_version_id']} (seq {sidecar['seq']}, "
        f"content sha256 {sidecar['content_hash']}) of {data_id['instrument']} "
        f"{data_id['physical_filter']} {sidecar['level']} from {sidecar['database']}"
    )
    sidecar_ref = None
    current = None
    try:
        with butler.transaction():
            butler.registry.registerRun(run)
            if existing is None:
                ref = butler.put(structure, scales_type, data_id, run=run)
                sidecar_ref = butler.put(sidecar, sidecar_type, data_id, run=run)
                butler.registry.setCollectionDocumentation(run, _append_doc(butler, run, doc))
            else:
                ref = existing
            if collection is not None:
                butler.registry.registerCollection(collection, daf.CollectionType.CALIBRATION)
                for begin, end in todo:
                    current = (begin, end)
                    butler.registry.certify(collection, [ref], tai_ns_timespan(begin, end))
    except daf.registry.ConflictingDefinitionError:
        begin, end = current if current is not None else (None, None)
        clash = _overlapping(butler, scales_type.name, collection, data_id, begin, end)
        raise ConflictError(
            f"butler:{repo}: certifying calibreg version {sidecar['calibreg_version_id']} in "
            f"{collection!r} for {_range(begin, end)} overlaps "
            f"{clash or 'a certification already there'}; nothing was written"
        ) from None
    except CalibregError:
        raise
    except Exception as err:
        raise CalibregError(
            f"butler:{repo}: publishing failed, nothing was written: {_one_line(err)}"
        ) from None
    return {
        "dataset_id": str(ref.id),
        "sidecar_id": None if sidecar_ref is None else str(sidecar_ref.id),
        "certified": [list(r) for r in todo if collection is not None],
        "already": [list(r) for r in already],
        "changed": True,
    }


def _append_doc(butler: Any, run: str, line: str) -> str:
    try:
        old = butler.registry.getCollectionDocumentation(run) or ""
    except Exception:
        old = ""
    return f"{old}\n{line}".strip() if line not in old else old


def _associations(butler: Any, dataset_type: str, collection: str) -> list[Any]:
    daf = daf_butler()
    if _collection_type(butler, collection) is None:
        return []
    try:
        return list(
            butler.registry.queryDatasetAssociations(
                dataset_type,
                collections=[collection],
                collectionTypes={daf.CollectionType.CALIBRATION},
            )
        )
    except daf.MissingDatasetTypeError:
        return []


def _split_ranges(
    butler: Any,
    dataset_type: str,
    collection: str | None,
    existing: Any | None,
    ranges: list[tuple[int, int | None]],
) -> tuple[list[tuple[int, int | None]], list[tuple[int, int | None]]]:
    """Ranges already certified for the existing dataset, and those still to certify."""
    if collection is None or existing is None:
        return [], list(ranges)
    have = {
        timespan_tai_ns(a.timespan)
        for a in _associations(butler, dataset_type, collection)
        if a.ref.id == existing.id
    }
    already = [r for r in ranges if r in have]
    return already, [r for r in ranges if r not in have]


def _overlapping(
    butler: Any,
    dataset_type: str,
    collection: str | None,
    data_id: dict[str, str],
    begin: int | None,
    end: int | None,
) -> str | None:
    """Describe the certification in the butler that the range runs into (for the message)."""
    if collection is None or begin is None:
        return None
    for assoc in _associations(butler, dataset_type, collection):
        if assoc.ref.dataId.get("physical_filter") != data_id["physical_filter"]:
            continue
        b, e = timespan_tai_ns(assoc.timespan)
        if (e is None or begin < e) and (end is None or (b or 0) < end):
            return f"dataset {assoc.ref.id} of run {assoc.ref.run!r} certified for {_range(b, e)}"
    return None


def _range(begin: int | None, end: int | None) -> str:
    """Return a validity range for a person: UTC, then the exact TAI ns."""
    from calibreg.formats.timescale import tai_ns_to_utc_iso

    if begin is None:
        return "an unknown range"
    shown = tai_ns_to_utc_iso(begin), "open" if end is None else tai_ns_to_utc_iso(end)
    return f"[{shown[0]}, {shown[1]}) (TAI ns {begin}..{end if end is not None else 'open'})"


def describe(result: dict[str, Any]) -> str:
    """One line for a person about what `publish_butler` did."""
    if not result["changed"]:
        return (
            f"nothing changed: version {result['version_id']} is already in run "
            f"{result['run']!r}"
            + (f" and certified in {result['collection']!r}" if result["collection"] else "")
        )
    certified = len(result["certified"])
    return (
        f"version {result['version_id']} written to run {result['run']!r} as "
        f"{result['dataset_type']} {result['dataset_id']}"
        + (f"; certified in {result['collection']!r} for {certified} range(s)" if certified else "")
    )
