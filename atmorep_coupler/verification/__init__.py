"""Verification the way WeatherBench 2 does it: scores, climatologies, forecasts from many start dates, scorecards.

``python -m atmorep_coupler.verify`` runs it for a checkpoint; :class:`Scorecard` scores any other
forecast system on the same terms.
"""

from atmorep_coupler.verification.climatology import Climatology
from atmorep_coupler.verification.scorecard import Scorecard, System
from atmorep_coupler.verification.scores import ForecastScores, latitude_weights

__all__ = ["Climatology", "ForecastScores", "Scorecard", "System", "latitude_weights"]
