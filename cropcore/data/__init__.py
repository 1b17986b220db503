"""Reading the official BreizhCrops files, the packed store, batching, RF features and the demo.

The download functions live in `cropcore.data.download`. Names are imported lazily so that `import cropcore.data` stays cheap (no torch, no geopandas).
"""

from __future__ import annotations

import importlib
from typing import Any

from cropcore.constants import BANDS, CLASSES, LEVELS, REGIONS
from cropcore.data.errors import DataFormatError, DatasetNotFoundError

_LAZY: dict[str, str] = {
    "BreizhCrops": "cropcore.data.dataset",
    "ParcelSeries": "cropcore.data.dataset",
    "Batches": "cropcore.data.batches",
    "grid_features": "cropcore.data.features",
    "GRID_DATES": "cropcore.data.features",
    "demo_root": "cropcore.data.simulate",
    "generate": "cropcore.data.simulate",
}

__all__ = ["BANDS", "CLASSES", "LEVELS", "REGIONS", "DataFormatError", "DatasetNotFoundError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cropcore.data' has no attribute {name!r}")
