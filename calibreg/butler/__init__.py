"""Live in the LSST data system: read inputs from, and publish versions to, a butler repository.

* `ingest_butler`: a repository's detector and exposure dimension records and its
  ``cpFlatProc_metadata`` datasets (files located through the butler, parsed by calibreg's
  PropertyList reader) into the registry, in one transaction and one ingest batch;
* `publish_butler`: a calibration version as cp_pipe's ``cpFlatNormScales`` dataset (with a
  provenance sidecar), optionally certified in a CALIBRATION collection for exactly the
  validity ranges the version has in a calibreg tag, all or nothing.

The LSST middleware (``lsst-daf-butler``) is the optional extra ``calibreg[butler]``. It is
imported only inside these functions, never when this package is imported, so the rest of
calibreg (and ``calibreg --help``) never loads it; without it the functions raise
`ButlerUnavailableError`, whose message says how to install it. The database is reached only
through :class:`calibreg.Registry`.
"""

from calibreg.butler._lsst import INSTALL_HINT, ButlerUnavailableError, daf_butler
from calibreg.butler.ingest import ButlerInputs, ingest_butler, read_butler_inputs
from calibreg.butler.publish import publish_butler

__all__ = [
    "INSTALL_HINT",
    "ButlerInputs",
    "ButlerUnavailableError",
    "daf_butler",
    "ingest_butler",
    "publish_butler",
    "read_butler_inputs",
]
