"""Value types and vocabularies shared by every layer; no database code.

The engine-free layers (services, task, CLI, HTTP) build and read these; the repository layer
(:mod:`calibreg.registry`) fills and stores them. Import the modules themselves
(``calibreg.domain.vocabulary``, ``.quantum``, ``.reports``, ``.hashing``, ``.jsonable``,
``.provenance``): this package imports nothing, so the CLI can load the vocabularies without
NumPy.
"""
