"""The repository layer: every SQL statement calibreg runs, as functions of a ``Connection``.

Only :class:`calibreg.Registry` calls these; it opens the connection or transaction and passes
it in. ``catalog`` reads geometry and exposures, ``ingest`` writes inputs, ``quantum`` assembles
matrices, ``versions`` persists and reads solves, ``tags`` certifies and looks up;
``backend`` holds what differs between SQLite and PostgreSQL.
"""
