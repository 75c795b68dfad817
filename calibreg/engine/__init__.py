"""The numerical engine: flat-field normalization scales ``B[row, exp] ≈ G[row] · E[exp]``.

NumPy and SciPy only; the engine knows nothing of the database, so a solve can be reproduced
from the stored input matrices alone. Besides the scales, a solution carries their standard
errors (:mod:`.uncertainty`), goodness of fit, quality flags with reasons and the entries left
out (:mod:`.quality`, whose names lists storage can use).
"""

from .cp_pipe import LEVELS, cp_pipe_scales, to_cp_pipe_scales
from .quality import (
    EXPOSURE_FLAGS,
    FLAG_BITS,
    FLAG_HELP,
    FLAGS,
    MISSING_REASONS,
    REJECTION_REASONS,
    ROW_FLAGS,
    QualityThresholds,
    flag_names,
)
from .solution import ScaleSolution
from .solve import METHODS, VARIANCES, WEIGHTS, measure_scales, usable_entries

__all__ = [
    "EXPOSURE_FLAGS",
    "FLAGS",
    "FLAG_BITS",
    "FLAG_HELP",
    "LEVELS",
    "METHODS",
    "MISSING_REASONS",
    "REJECTION_REASONS",
    "ROW_FLAGS",
    "VARIANCES",
    "WEIGHTS",
    "QualityThresholds",
    "ScaleSolution",
    "cp_pipe_scales",
    "flag_names",
    "measure_scales",
    "to_cp_pipe_scales",
    "usable_entries",
]
