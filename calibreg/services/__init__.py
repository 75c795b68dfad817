"""Orchestration over the layers below: solve requests, verification, simulation, demo, plots.

Services take a :class:`calibreg.Registry` (never a URL or an engine) and use only its methods.
"""
