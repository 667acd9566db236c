"""Components: the BMI base every Earth-system component derives from, its items, grids and clock.

``Component`` (base.py) implements all of ``bmipy.Bmi`` plus the native layer (``step``,
``advance_to``, ``get_field``/``set_field``, ``exchange_items``, ``save_state``/``load_state``);
subclasses implement a few hooks. See docs/components.md for a worked example.
"""

from atmorep_coupler.component.base import Component
from atmorep_coupler.component.clock import CALENDARS, Clock, to_cftime
from atmorep_coupler.component.items import SCALAR_GRID, ComponentGrid, ExchangeItem, HorizontalGrid, Role
from atmorep_coupler.component.settings import ComponentConfig

__all__ = [
    "CALENDARS",
    "Clock",
    "Component",
    "ComponentConfig",
    "ComponentGrid",
    "ExchangeItem",
    "HorizontalGrid",
    "Role",
    "SCALAR_GRID",
    "to_cftime",
]
