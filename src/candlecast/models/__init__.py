"""Forecasting models behind one interface (``Forecaster``): Kronos, the statistical baseline and, later,
Chronos-2, plus the registry that loads the configured ones and the trading calendars that lay out forecast
timestamps.

Import the heavy modules (``kronos``, ``kronos_forecaster``) directly; this package only re-exports the
light, torch-free interface.
"""

from candlecast.models.base import Forecast, Forecaster, ModelInfo, SeriesInput

__all__ = ["Forecast", "Forecaster", "ModelInfo", "SeriesInput"]
