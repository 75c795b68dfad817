"""The repository layer: every SQL statement calibreg runs, as functions of a ``Connection``.

Only :class:`calibreg.Registry` calls these; it opens the connection or transaction and passes
it in. ``catalog`` reads geometry and exposures, ``ingest`` writes inputs, ``quantum`` assembles
matrices, ``versions`` persists and reads solves, ``tags`` certifies and looks up;
``backend`` holds what differs between SQLite and PostgreSQL.

pandas (and, through :mod:`~calibreg.registry.stats_store`, pyarrow and the ADBC drivers) is
imported inside the functions that build or take DataFrames, never when a module is imported:
a command that only lists versions (``calibreg versions list``) must not pay for it (issue 12).
Annotations name it under ``TYPE_CHECKING``. :mod:`~calibreg.registry.ingest`,
:mod:`~calibreg.registry.combined` and :mod:`~calibreg.registry.stats_store` are DataFrame code
through and through: they import pandas at the top, and are themselves imported where used.
"""
