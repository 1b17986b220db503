"""cropcore: crop-type mapping from Sentinel-2 parcel time series (BreizhCrops)."""

from cropcore.constants import BANDS, CLASS_COLORS, CLASSES, LEVELS, REGIONS

__version__ = "0.1.0"
__all__ = ["BANDS", "CLASSES", "CLASS_COLORS", "LEVELS", "REGIONS", "__version__"]
