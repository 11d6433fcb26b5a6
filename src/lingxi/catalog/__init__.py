"""Which model, on what hardware, at what cost: a sourced catalog, an estimator and an advisor.

- :func:`load_catalog` — shipped models/GPUs/scenarios plus ``[catalog]`` additions.
- :func:`estimate` — memory (GiB), GPUs needed, roofline speed and API cost for one model.
- :func:`select` — hard filters, then a transparent score with reasons for every model.
- :func:`bench` — run a configured model here and put measured TTFT/tokens/s next to the estimate.

Every figure in the data files has a source or is None; nothing here downloads anything.
"""

from __future__ import annotations

from lingxi.catalog.estimate import Estimate, estimate
from lingxi.catalog.registry import Catalog, CatalogModelNotFoundError, load_catalog
from lingxi.catalog.schema import GPU, Architecture, ModelEntry, Price, Scenario, Score, missing_sources
from lingxi.catalog.select import Requirements, Selection, select

__all__ = [
    "GPU", "Architecture", "Catalog", "CatalogModelNotFoundError", "Estimate", "ModelEntry", "Price",
    "Requirements", "Scenario", "Score", "Selection", "estimate", "load_catalog", "missing_sources", "select",
]
