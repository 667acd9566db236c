"""Coupled runs from a coupling YAML (docs/coupling.md).

``schema`` (the YAML and its checks) -> ``build`` (grids, components, regridders) -> ``driver`` (the
run loop over ``exchange``s, with ``clock``, ``reduction``, ``output``, ``restart`` and a
``transport``: in-process or Ray). ``receiver`` is a data-sink component for forcing-only runs.
Entry point: ``python -m atmorep_coupler.run``.
"""
