"""Read ahead: produce the next item of an iterator in a thread while the caller uses this one.

An ingest alternates between parsing a block of a file (pyarrow's CSV reader and NumPy release
the GIL) and writing the previous one to the database (SQLite's ``sqlite3_step`` and libpq's
COPY release it too); reading one block ahead overlaps the two on a second core. At most
``depth`` items are produced ahead (counting the one being produced), so memory holds at most
``depth + 1`` blocks: the one in use and the ones read ahead.
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
        Items produced ahead of the consumer, counting the one being produced (``>= 1``):
        the next is started only when the consumer takes one.

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
    box: queue.SimpleQueue = queue.SimpleQueue()
    slots = threading.Semaphore(depth)  # items produced (or being produced) not yet taken
    stop = threading.Event()

    def produce() -> None:
        it = iter(items)
        while True:
            while not slots.acquire(timeout=0.05):
                if stop.is_set():
                    return
            if stop.is_set():
                return
            try:
                item = next(it)
            except StopIteration:
                box.put((_DONE, None))
                return
            except BaseException as exc:  # handed to the consumer, raised there
                box.put((_DONE, exc))
                return
            box.put((item, None))
            del item  # the queue holds it; the producer keeps no second reference

    worker = threading.Thread(target=produce, name="calibreg-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = box.get()
            slots.release()  # taken: the producer may start on the next one
            if item is _DONE:
                if exc is not None:
                    raise exc
                return
            yield item
            del item
    finally:
        stop.set()
        slots.release()
        worker.join()
