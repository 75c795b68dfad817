"""Hierarchical task metadata in the form of LSST ``pipe_base``'s ``TaskMetadata``.

A calibration version stores the metadata of the Task that produced it (SPEC §2), and other
LSST tools read that document, so the layout is pipe_base's JSON form exactly::

    {"scalars": {name: value}, "arrays": {name: [values]},
     "metadata": {name: {"scalars": ..., "arrays": ..., "metadata": ...}}}

Values are ``bool``, ``int``, ``float`` or ``str``. JSON has no NaN, and pipe_base writes a NaN
as ``null`` (see the ``spatialFitChi2`` of a real file), so `TaskMetadata.to_json` writes
``null`` for non-finite floats and `TaskMetadata.from_dict` reads ``null`` back as NaN.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from calibreg.domain.jsonable import jsonable

__all__ = ["TaskMetadata"]

Scalar = bool | int | float | str
_CATEGORIES = ("scalars", "arrays", "metadata")


def _scalar(name: str, value: Any) -> Scalar:
    """Check (and unwrap NumPy scalars to) one storable value; refuse anything else.

    Refusing early keeps a bad value from surfacing only when the version is written.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float | str):
        return value
    raise ValueError(
        f"task metadata {name!r}: values must be bool, int, float or str, "
        f"not {type(value).__name__} ({value!r})"
    )


def _is_array(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


def _split(key: str) -> tuple[str, str | None]:
    if not isinstance(key, str) or not key:
        raise KeyError(f"task metadata names must be non-empty strings, not {key!r}")
    head, _, rest = key.partition(".")
    if not head or (rest == "" and key.endswith(".")):
        raise KeyError(f"malformed task metadata name {key!r}")
    return head, rest or None


def _from_json_value(value: Any) -> Any:
    return math.nan if value is None else value


class TaskMetadata:
    """Scalars, arrays and nested metadata of one task (or of a whole task tree).

    Names may be dotted: ``md["a.b"] = 1`` stores scalar ``b`` in nested metadata ``a``, as in
    pipe_base. A name lives in exactly one category; assigning it again replaces it.

    Parameters
    ----------
    scalars, arrays, metadata : mapping, optional
        Initial content (checked as if assigned item by item, so the category follows the
        value: a list goes to ``arrays`` whichever argument it came in).

    Raises
    ------
    ValueError
        For a value that is not bool, int, float or str (NumPy scalars are unwrapped).
    KeyError
        For an empty or malformed name.
    """

    __slots__ = ("arrays", "metadata", "scalars")

    def __init__(
        self,
        scalars: Mapping[str, Any] | None = None,
        arrays: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.scalars: dict[str, Scalar] = {}
        self.arrays: dict[str, list[Scalar]] = {}
        self.metadata: dict[str, TaskMetadata] = {}
        for source in (scalars, arrays, metadata):
            for key, value in (source or {}).items():
                self[key] = value

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskMetadata:
        """Build from the pipe_base JSON form (``scalars``/``arrays``/``metadata``).

        ``null`` values are NaN (how pipe_base writes them). Unknown top-level keys are an
        error rather than silently dropped, so a wrapper such as the butler's
        ``{"attempts": [...]}`` is noticed instead of yielding empty metadata. Names are kept
        as written (full task names contain ``:``), not split at dots.

        Parameters
        ----------
        data : mapping
            ``{"scalars": {...}, "arrays": {...}, "metadata": {...}}``; any part may be
            absent or null.

        Returns
        -------
        TaskMetadata

        Raises
        ------
        TypeError
            If ``data`` (or a nested ``metadata`` entry) is not a mapping.
        ValueError
            For an unknown top-level key, an array that is not a list, a value that is not
            bool, int, float, str or null, or an empty name.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"task metadata must be a mapping, not {type(data).__name__}")
        unknown = set(data) - set(_CATEGORIES)
        if unknown:
            raise ValueError(
                f"not pipe_base TaskMetadata JSON: unexpected key(s) {sorted(unknown)}; "
                "expected only 'scalars', 'arrays' and 'metadata'"
            )
        md = cls()
        for key, value in (data.get("scalars") or {}).items():
            md.scalars[_split_plain(key)] = _scalar(key, _from_json_value(value))
        for key, values in (data.get("arrays") or {}).items():
            if not isinstance(values, list):
                raise ValueError(f"task metadata array {key!r} is not a list")
            md.arrays[_split_plain(key)] = [_scalar(key, _from_json_value(v)) for v in values]
        for key, nested in (data.get("metadata") or {}).items():
            md.metadata[_split_plain(key)] = cls.from_dict(nested)
        return md

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskMetadata:
        """Parse pipe_base TaskMetadata JSON (see `from_dict`).

        Raises
        ------
        ValueError
            For invalid JSON (`json.JSONDecodeError`) and for what `from_dict` refuses.
        TypeError
            If the document is not a JSON object.
        """
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        """Return the pipe_base JSON form as Python objects (NaN stays a float NaN here).

        The containers are new, so changing them does not change this metadata.
        """
        return {
            "scalars": dict(self.scalars),
            "arrays": {k: list(v) for k, v in self.arrays.items()},
            "metadata": {k: v.to_dict() for k, v in self.metadata.items()},
        }

    def to_json(self, **kwargs: Any) -> str:
        """Serialize as strict JSON (non-finite floats as ``null``), as pipe_base writes it.

        Strict because PostgreSQL's ``jsonb`` and other JSON parsers refuse ``NaN``.

        Parameters
        ----------
        **kwargs
            Passed to `json.dumps` (``indent``, ``sort_keys``...).

        Returns
        -------
        str
        """
        return json.dumps(jsonable(self.to_dict()), allow_nan=False, **kwargs)

    def copy(self) -> TaskMetadata:
        """Return a deep copy: later changes to either do not show in the other."""
        return copy.deepcopy(self)

    # ------------------------------------------------------------------ mapping protocol
    def __setitem__(self, key: str, value: Any) -> None:
        head, rest = _split(key)
        if rest is not None:
            child = self.metadata.get(head)
            if child is None:
                self._discard(head)
                child = self.metadata[head] = TaskMetadata()
            child[rest] = value
            return
        if isinstance(value, TaskMetadata):
            stored: Any = value
            self._discard(head)
            self.metadata[head] = stored
        elif isinstance(value, Mapping):
            self._discard(head)
            self.metadata[head] = TaskMetadata(scalars=value)
        elif _is_array(value):
            values = [_scalar(key, v) for v in value]
            self._discard(head)
            self.arrays[head] = values
        else:
            checked = _scalar(key, value)
            self._discard(head)
            self.scalars[head] = checked

    def __getitem__(self, key: str) -> Any:
        head, rest = _split(key)
        if rest is not None:
            if head in self.metadata:
                return self.metadata[head][rest]
            raise KeyError(key)
        for category in (self.scalars, self.arrays, self.metadata):
            if head in category:
                return category[head]
        raise KeyError(key)

    def __delitem__(self, key: str) -> None:
        head, rest = _split(key)
        if rest is not None:
            if head not in self.metadata:
                raise KeyError(key)
            del self.metadata[head][rest]
            return
        if not self._discard(head):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.scalars) + len(self.arrays) + len(self.metadata)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskMetadata):
            return NotImplemented
        # Through strict JSON so that NaN equals NaN, as it does after a round trip.
        return jsonable(self.to_dict()) == jsonable(other.to_dict())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"TaskMetadata(scalars={self.scalars!r}, arrays={self.arrays!r}, "
            f"metadata={list(self.metadata)!r})"
        )

    def keys(self) -> list[str]:
        """Top-level names of all three categories."""
        return [*self.scalars, *self.arrays, *self.metadata]

    def items(self) -> list[tuple[str, Any]]:
        """``(name, value)`` of the top-level names."""
        return [(k, self[k]) for k in self.keys()]

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key`` (dotted allowed), or ``default`` if there is none."""
        try:
            return self[key]
        except KeyError:
            return default

    def add(self, name: str, value: Any) -> None:
        """Append ``value`` to the array ``name``, creating it (pipe_base semantics).

        A scalar of that name becomes an array holding the old and new values, so a timer
        entered twice keeps both readings. Nested metadata of that name is replaced.

        Parameters
        ----------
        name : str
            The array's name; dotted names append in nested metadata.
        value : bool, int, float or str
            The value to append (NumPy scalars are unwrapped).

        Raises
        ------
        ValueError
            For a value of another type.
        KeyError
            For an empty or malformed name.
        """
        head, rest = _split(name)
        if rest is not None:
            child = self.metadata.get(head)
            if child is None:
                self._discard(head)
                child = self.metadata[head] = TaskMetadata()
            child.add(rest, value)
            return
        checked = _scalar(name, value)
        if head in self.arrays:
            self.arrays[head].append(checked)
        elif head in self.scalars:
            self.arrays[head] = [self.scalars.pop(head), checked]
        else:
            self._discard(head)
            self.arrays[head] = [checked]

    def getScalar(self, key: str) -> Scalar:
        """Return a scalar, or the last element of an array (pipe_base semantics).

        Raises
        ------
        KeyError
            If ``key`` is absent or names nested metadata.
        """
        value = self[key]
        if isinstance(value, list):
            return value[-1]
        if isinstance(value, TaskMetadata):
            raise KeyError(f"{key!r} is nested metadata, not a scalar")
        return value

    def getArray(self, key: str) -> list[Scalar]:
        """Return an array (as a new list), or a scalar wrapped in a one-element list.

        This is pipe_base's semantics: callers get a list whether the name was assigned
        once (a scalar) or appended to with `add` (an array).

        Raises
        ------
        KeyError
            If ``key`` is absent or names nested metadata.
        """
        value = self[key]
        if isinstance(value, TaskMetadata):
            raise KeyError(f"{key!r} is nested metadata, not an array")
        return list(value) if isinstance(value, list) else [value]

    def names(self) -> set[str]:
        """Every name, nested ones dotted (``a``, ``a.b``...)."""
        out: set[str] = set(self.scalars) | set(self.arrays)
        for key, child in self.metadata.items():
            out.add(key)
            out.update(f"{key}.{n}" for n in child.names())
        return out

    def paramNames(self, topLevelOnly: bool = False) -> set[str]:
        """Names of values (not of nested metadata), dotted unless ``topLevelOnly``."""
        out: set[str] = set(self.scalars) | set(self.arrays)
        if not topLevelOnly:
            for key, child in self.metadata.items():
                out.update(f"{key}.{n}" for n in child.paramNames())
        return out

    def _discard(self, head: str) -> bool:
        found = False
        for category in (self.scalars, self.arrays, self.metadata):
            if head in category:
                del category[head]
                found = True
        return found


def _split_plain(key: Any) -> str:
    """Check a stored key from a JSON document: any non-empty string (task names have ':')."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"task metadata names must be non-empty strings, not {key!r}")
    return key
