"""Prices: the dated catalog (genai-prices + overrides) and exact usage costs.

Public API: :class:`Catalog` (look up, suggest, rate, price), :class:`TokenUsage`, :class:`Cost`,
:class:`ModelRate`, :class:`PriceSource`, and :func:`load_catalog` to build a catalog from config.
"""

from __future__ import annotations

from ..config import MarginConfig, margin_home
from ._data import PriceData, PriceSource, install_data_file, load_price_data, remove_data_file
from .catalog import Catalog, CatalogEntry
from .cost import Cost, TokenUsage, UsageError
from .rates import ModelRate

__all__ = [
    "Catalog",
    "CatalogEntry",
    "Cost",
    "ModelRate",
    "PriceData",
    "PriceSource",
    "TokenUsage",
    "UsageError",
    "install_data_file",
    "load_catalog",
    "load_price_data",
    "remove_data_file",
]


def load_catalog(config: MarginConfig | None = None) -> Catalog:
    """The catalog margin uses: installed update file or bundled data, with config overrides."""
    config = config or MarginConfig()
    return Catalog.from_data(load_price_data(margin_home(config)), config.prices)
