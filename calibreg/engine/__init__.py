"""The numerical engine: flat-field normalization scales ``B[row, exp] ≈ G[row] · E[exp]``.

NumPy and SciPy only; the engine knows nothing of the database, so a solve can be reproduced
from the stored input matrices alone.
"""

from .cp_pipe import LEVELS, cp_pipe_scales, to_cp_pipe_scales
from .solution import ScaleSolution
from .solve import METHODS, WEIGHTS, measure_scales

__all__ = [
    "LEVELS",
    "METHODS",
    "WEIGHTS",
    "ScaleSolution",
    "cp_pipe_scales",
    "measure_scales",
    "to_cp_pipe_scales",
]
