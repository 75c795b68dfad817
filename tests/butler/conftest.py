"""Butler tests run against the real LSST middleware, or fail under CI.

Without ``lsst-daf-butler`` (the ``calibreg[butler]`` extra) they skip with that reason; with
``CI`` or ``CALIBREG_REQUIRE_BUTLER=1`` set they fail instead, as PostgreSQL tests do, so that a
CI run that lost the extra cannot pass by skipping them.

Repositories are real ones made with ``Butler.makeRepo`` in temporary directories: one is built
per session (:func:`template_repo`) and each test gets its own copy (a butler repository with
the default configuration is relocatable), so tests can write to it freely.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.butler.butlerdata import POLICY, Repo, make_repo, raft


def butler_required() -> bool:
    """Whether a missing middleware must fail the run rather than skip."""
    return bool(os.environ.get("CI")) or os.environ.get("CALIBREG_REQUIRE_BUTLER") == "1"


@pytest.fixture(scope="session", autouse=True)
def _daf_butler() -> None:
    try:
        import lsst.daf.butler  # noqa: F401
    except ImportError:
        reason = "lsst-daf-butler is not installed: pip install -e '.[dev,butler]'"
        if butler_required():
            pytest.fail(f"the butler extra is required here but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def policy_camera():
    """LSSTCam assembled from its obs_lsst policy directory."""
    from calibreg.formats import read_camera

    return read_camera(POLICY / "lsstCam")


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory, policy_camera) -> Repo:
    """One repository per session: raft R02 (9 detectors), 8 simulated flats."""
    base = tmp_path_factory.mktemp("butler")
    return make_repo(base / "repo", raft(policy_camera), files_dir=base / "inputs")


@pytest.fixture
def repo(template_repo: Repo, tmp_path: Path) -> Repo:
    """This test's own copy of the session's repository."""
    root = tmp_path / "repo"
    shutil.copytree(template_repo.root, root)
    files = {
        key: root / path.relative_to(template_repo.root)
        for key, path in template_repo.files.items()
    }
    return Repo(root, template_repo.sim, template_repo.detectors, files)
