"""The seed's Task as a Python API: cp_pipe's ``CpFlatNormalizationTask`` on calibreg.

``FlatNormalizationTask`` (alias ``CpFlatNormalizationTask``) keeps the LSST task's config
names, ``run(inputMDs, inputDims, camera)`` and ``measureScales``, so code written against
cp_pipe runs unchanged, and adds ``runQuantum(registry, quantum)`` to solve from and persist
to a registry. The small Task framework (`Config`, `Task`, `Struct`, `TaskMetadata`) has no
LSST dependency.
"""

from .base import (
    ChoiceField,
    Config,
    ConfigurableField,
    Field,
    FieldValidationError,
    Struct,
    Task,
    timeMethod,
)
from .flat_norm import (
    AssembleTask,
    CpFlatNormalizationTask,
    CpFlatNormalizationTaskConfig,
    FlatNormalizationTask,
    FlatNormalizationTaskConfig,
    PersistTask,
    SolveTask,
)
from .metadata import TaskMetadata

__all__ = [
    "AssembleTask",
    "ChoiceField",
    "Config",
    "ConfigurableField",
    "CpFlatNormalizationTask",
    "CpFlatNormalizationTaskConfig",
    "Field",
    "FieldValidationError",
    "FlatNormalizationTask",
    "FlatNormalizationTaskConfig",
    "PersistTask",
    "SolveTask",
    "Struct",
    "Task",
    "TaskMetadata",
    "timeMethod",
]
