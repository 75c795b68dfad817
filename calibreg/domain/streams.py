"""Read ahead: produce the next item of an iterator in a thread while the caller uses this one.

An ingest alternates between parsing a block of a file (pyarrow's CSV reader and NumPy release
the GIL) and writing the previous one to the database (SQLite's ``sqlite3_step`` and libpq's
COPY release it too); reading one block ahead overlaps the two on a second core. At most
``depth`` items wait in the queue, so memory stays bounded by ``depth + 1`` blocks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["read_ahead"]

T = TypeVar("T")

_DONE = object()


def read_ahead(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield ``items`` in order, producing up to ``depth`` of them ahead in a thread.

    Parameters
    ----------
    items : iterable
        Any iterable; it is consumed in one background thread.
    depth : int
        Items produced ahead of the consumer (``>= 1``).

    Yields
    ------
    The items of ``items``, in order.

    Raises
    ------
    Exception
        Whatever ``items`` raised, re-raised in the consumer when it reaches that point
        (the items before it are yielded first).

    Notes
    -----
    When the consumer stops early (an error downstream, ``break``, garbage collection of
    the generator), the producer is told to stop and is joined: no thread outlives the
    iteration, and at most ``depth`` items are produced in vain.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put((_DONE, exc))
            return
        put((_DONE, None))

    worker = threading.Thread(target=produce, name="calibreg-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = box.get()
            if item is _DONE:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        worker.join()
