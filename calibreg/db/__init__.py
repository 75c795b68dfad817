"""The database schema: naming convention, cross-dialect types, tables and the migrations API.

One schema serves SQLite and PostgreSQL alike (`calibreg.db.types` hides their differences in
instants and NaN). The modules are imported directly (`calibreg.db.models`,
`calibreg.db.migrate`...); the SQL that reads and writes rows lives in `calibreg.registry`.
"""
