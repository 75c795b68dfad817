"""The repeated-key check of a streamed statistics ingest, against a model that scans row by row."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibreg.errors import InputError
from calibreg.registry.ingest import _SeenKeys

KEY = st.tuples(
    st.sampled_from([2026011500100, 2026011500101, -5, 2**40]),
    st.integers(0, 3),
    st.one_of(st.none(), st.integers(0, 2)),  # None: a detector-level row
)


def _frame(rows: list[tuple], source: str, first_row: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "exposure": np.array([r[0] for r in rows], dtype=np.int64),
            "detector": np.array([r[1] for r in rows], dtype=np.int64),
            "amp_index": pd.array([r[2] for r in rows], dtype="Int64"),
            "source": source,
            "source_row": np.arange(first_row, first_row + len(rows), dtype=np.int64),
        }
    )


def _model(blocks: list[list[tuple]], sources: list[str]) -> tuple[str, int, str, int] | None:
    """The error the check must raise, by a dictionary scan: (file, row, other file, other row).

    Within a block, the first row of a key given twice in it (naming the later one) wins over
    a key repeating an earlier block's (naming the earlier block's row).
    """
    seen: dict[tuple, tuple[str, int]] = {}
    row = 1
    for block, source in zip(blocks, sources, strict=True):
        rows = list(range(row, row + len(block)))
        inside = {}
        for r, key in zip(rows, block, strict=True):
            inside.setdefault(key, []).append(r)
        twice = [(rs[0], rs[1]) for rs in inside.values() if len(rs) > 1]
        if twice:
            first, later = min(twice)
            return source, first, source, later
        for r, key in zip(rows, block, strict=True):
            if key in seen:
                return (source, r, *seen[key])
        for r, key in zip(rows, block, strict=True):
            seen[key] = (source, r)
        row += len(block)
    return None


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(st.lists(KEY, max_size=8), max_size=40),
    files=st.integers(1, 3),
)
def test_a_repeated_key_is_found_in_any_earlier_block(blocks, files) -> None:
    sources = [f"f{i % files}.csv" for i in range(len(blocks))]
    expected = _model(blocks, sources)
    seen = _SeenKeys()

    def ingest() -> None:
        row = 1
        for block, source in zip(blocks, sources, strict=True):
            frame = _frame(block, source, row)
            row += len(block)
            seen.remember(seen.check(frame))

    if expected is None:
        ingest()
        return
    source, first, other_source, other_row = expected
    with pytest.raises(
        InputError, match=rf"also at {re.escape(other_source)} row {other_row}\)"
    ) as err:
        ingest()
    assert (err.value.source, err.value.row) == (source, first)


def test_many_blocks_keep_few_levels_and_find_the_first_block() -> None:
    """200 blocks: the oldest block's keys are still found; the levels stay logarithmic."""
    seen = _SeenKeys()
    n = 500
    for b in range(200):
        rows = [(1000 + b, d, a) for d in range(n // 10) for a in range(10)]
        seen.remember(seen.check(_frame(rows, "a.csv", 1 + b * n)))
        assert len(seen._levels) <= int(np.log2(b + 1)) + 1
    assert sum(len(k) for k, _ in seen._levels) == 200 * n
    with pytest.raises(InputError, match=r"also at a.csv row 2\)"):
        seen.check(_frame([(1000, 0, 1)], "b.csv", 1))


def test_the_first_repeated_row_is_named_whichever_level_holds_its_key() -> None:
    """A block repeating keys of two levels: its first such row is named, not the old level's."""
    seen = _SeenKeys()
    old = [(7, d, 0) for d in range(8)]  # rows 1-8: one level
    seen.remember(seen.check(_frame(old, "a.csv", 1)))
    seen.remember(seen.check(_frame([(8, 0, 0)], "a.csv", 9)))  # row 9: a second, newer level
    assert len(seen._levels) == 2
    with pytest.raises(InputError) as err:
        seen.check(_frame([(9, 0, 0), (8, 0, 0), (7, 3, 0)], "b.csv", 1))
    assert (err.value.source, err.value.row) == ("b.csv", 2)
    assert "also at a.csv row 9)" in str(err.value)
