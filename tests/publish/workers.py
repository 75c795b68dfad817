"""Code run in child processes by the concurrency tests (importable under ``spawn``)."""

from __future__ import annotations

import os
import signal
import sys


def certify_rounds(url: str, version: int, ranges: list, barrier, queue) -> None:
    """Certify ``version`` once per round, all workers released together by ``barrier``.

    Puts ``(round, version, "ok" | error class name, message)`` on ``queue`` per round.
    """
    from calibreg.client import Registry

    with Registry(url) as reg:
        reg.versions()  # connect and warm up before the first race
        for rnd, (tag, begin, end) in enumerate(ranges):
            barrier.wait(timeout=60)
            try:
                reg.certify(version, tag, begin, end)
            except Exception as err:
                queue.put((rnd, version, type(err).__name__, str(err)))
            else:
                queue.put((rnd, version, "ok", ""))


def solve_then_die(url: str) -> None:
    """Solve the test quantum, killing this process (SIGKILL) in the middle of persisting.

    The version row and its exposure scales have been inserted (first ``bulk_insert``), the row
    scales not: the transaction is open when the process dies.
    """
    import calibreg.registry.versions as versions
    from calibreg.client import Registry
    from calibreg.services.solve import SolveRequest, solve_quantum

    real = versions.bulk_insert
    calls = []

    def dying(conn, table, frame, columns):
        calls.append(table)
        if len(calls) == 2:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(conn, table, frame, columns)

    versions.bulk_insert = dying
    solve_quantum(Registry(url), SolveRequest("LSSTCam", "r_57"))
    print("survived", calls)  # must never be reached


if __name__ == "__main__":
    solve_then_die(sys.argv[1])
