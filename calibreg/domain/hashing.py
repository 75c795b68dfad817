"""Content hashes: one canonical way to hash arrays, and files.

Every stored hash (a version's ``content_hash``, a quantum's ``input_fingerprint``, an ingest
batch's ``sha256``) is made here, so equal content always hashes equal: integers as little-endian
int64, floats as little-endian float64 with every NaN bit pattern folded into one, booleans
bit-packed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Self

import numpy as np


class ArrayDigest:
    """An incremental sha256 over text and arrays in a canonical byte form.

    Each ``update_*`` method returns the digest, so calls chain.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def update_text(self, text: str) -> Self:
        """Add ``text`` as UTF-8."""
        self._sha.update(text.encode())
        return self

    def update_ints(self, values: np.ndarray) -> Self:
        """Add an integer array as little-endian int64 (any shape, C order)."""
        self._sha.update(np.ascontiguousarray(values, dtype="<i8").tobytes())
        return self

    def update_floats(self, values: np.ndarray) -> Self:
        """Add a float array as little-endian float64, every NaN canonicalised."""
        arr = np.asarray(values, dtype=float)
        canon = np.where(np.isnan(arr), np.nan, arr)
        self._sha.update(np.ascontiguousarray(canon, dtype="<f8").tobytes())
        return self

    def update_bools(self, values: np.ndarray) -> Self:
        """Add a boolean array, bit-packed."""
        self._sha.update(np.packbits(np.asarray(values, dtype=bool)).tobytes())
        return self

    def hexdigest(self) -> str:
        """Return the sha256 so far, as 64 hex digits."""
        return self._sha.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Return the sha256 of ``data`` as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


def sha256_files(paths: Iterable[str | Path]) -> str:
    """Return the content hash of one file, or of several files in the order given.

    One file hashes to the sha256 of its bytes (what ``sha256sum`` prints); several to the
    sha256 of their hex digests concatenated in order.

    Raises
    ------
    FileNotFoundError
        If a file does not exist.
    """
    paths = list(paths)
    if len(paths) == 1:
        return _sha256_file(paths[0])
    outer = hashlib.sha256()
    for path in paths:
        outer.update(_sha256_file(path).encode())
    return outer.hexdigest()


def _sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["ArrayDigest", "sha256_bytes", "sha256_files"]
