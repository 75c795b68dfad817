"""Who and what made a registry entry: user, host, software version and git commit.

Gathered here, at the edge, and handed to the repository layer, which stores it and never asks
the operating system itself.
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import os
import socket
import subprocess
from pathlib import Path

from calibreg._version import __version__


def current_user() -> str:
    """Return the login name of whoever runs calibreg (``unknown`` when the OS cannot say)."""
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER", "unknown")


@functools.cache
def git_commit() -> str | None:
    """Return the git commit of the calibreg source tree when it runs from a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@dataclasses.dataclass(frozen=True)
class Who:
    """The actor of a write, recorded with ingest batches, versions and certifications."""

    user: str
    host: str
    software_version: str
    git_commit: str | None = None

    @classmethod
    def current(cls) -> Who:
        """Return the current process's user, host, calibreg version and git commit."""
        return cls(
            user=current_user(),
            host=socket.gethostname(),
            software_version=__version__,
            git_commit=git_commit(),
        )


__all__ = ["Who", "current_user", "git_commit"]


#: The fields of a version record that travel with its exported scales: in the sidecar of
#: ``calibreg export -o FILE`` and in the butler's ``*_calibreg`` sidecar dataset.
SIDECAR_FIELDS = (
    "seq",
    "level",
    "method",
    "content_hash",
    "input_fingerprint",
    "n_exposures",
    "n_rows",
    "config",
    "provenance",
    "software_version",
    "schema_revision",
    "user_name",
    "host",
    "created_at",
)
