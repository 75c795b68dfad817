"""read_ahead: the same items in the same order, errors where they happened, no stray thread."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calibreg.domain.streams import read_ahead


def _threads() -> int:
    return sum(t.name == "calibreg-read-ahead" for t in threading.enumerate())


@given(st.lists(st.integers()), st.integers(min_value=1, max_value=4))
def test_yields_every_item_in_order(items: list[int], depth: int) -> None:
    assert list(read_ahead(iter(items), depth)) == items
    assert _threads() == 0


def test_an_error_comes_after_the_items_before_it() -> None:
    def items():
        yield 1
        yield 2
        raise ValueError("row 3 is bad")

    stream = read_ahead(items())
    assert [next(stream), next(stream)] == [1, 2]
    with pytest.raises(ValueError, match="row 3"):
        next(stream)
    assert _threads() == 0


def test_reads_at_most_depth_ahead_and_stops_with_the_consumer() -> None:
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    stream = read_ahead(items(), depth=2)
    assert next(stream) == 0
    time.sleep(0.2)  # the producer fills the queue, then waits
    assert len(produced) <= 3  # the one taken and two ahead; the next waits for a take
    stream.close()  # the consumer stops early (an error downstream)
    assert _threads() == 0
    assert len(produced) <= 4


def test_the_next_item_is_produced_while_the_consumer_holds_this_one() -> None:
    second = threading.Event()

    def items():
        yield 0
        second.set()  # reached only by reading ahead: the consumer has not asked yet
        yield 1

    stream = read_ahead(items())
    assert next(stream) == 0
    assert second.wait(timeout=30)  # produced while item 0 is still being used
    assert list(stream) == [1]


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        list(read_ahead([1], depth=0))
