"""The AtmoRep component as ``bmi-tester`` runs it: its bootstrap stage calls ``update()`` right after
``initialize``, but the component steps only after every pure import was set once (as a host sets them).
:class:`PrefedAtmoRep` does what a host does before its first step, inside ``initialize``: it sets each
pure import once, from the initial-condition store at the first step's target time. Every BMI function
the tester checks is ``AtmoRepComponent``'s own."""

from __future__ import annotations

import numpy as np

from atmorep_coupler.component.atmorep import AtmoRepComponent
from atmorep_coupler.data import open_store
from atmorep_coupler.data.sampler import transform_reader
from atmorep_coupler.data.store import ERA5Store


class PrefedAtmoRep(AtmoRepComponent):
    def initialize(self, config_file) -> None:
        super().initialize(config_file)
        store = open_store(self.resolve_path(self.config.initial_condition))
        target = self.datetime_at(self.get_time_step())
        index = store.time_index(np.datetime64(target.isoformat()))
        for spec in self.inputs:
            read = transform_reader(spec.config.transform) if spec.config.transform else ERA5Store.read
            values = read(store, spec.variable, time=[index], levels=list(spec.config.levels) or None)[0]
            self.set_value(spec.name, np.asarray(values).ravel())
