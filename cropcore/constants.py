"""Facts about the published BreizhCrops 2017 release, defined once.

Everything that names regions, levels, bands, classes or official files reads it from here, so
the loader, the simulator, the models and the dashboard can never disagree.
"""

from __future__ import annotations

YEAR = 2017

#: The four NUTS-3 departments of the benchmark, in the paper's order.
REGIONS: tuple[str, ...] = ("frh01", "frh02", "frh03", "frh04")
#: Small extra areas of the release (not part of the benchmark protocol).
EXTRA_REGIONS: dict[str, tuple[str, ...]] = {"L1C": ("belle-ile", "kermaux"), "L2A": ("belle-ile",)}
REGION_NAMES: dict[str, str] = {
    "frh01": "Côtes-d'Armor",
    "frh02": "Finistère",
    "frh03": "Ille-et-Vilaine",
    "frh04": "Morbihan",
    "belle-ile": "Belle-Île",
    "kermaux": "Kermaux",
}
LEVELS: tuple[str, ...] = ("L1C", "L2A")

#: Columns of each parcel's HDF5 dataset, in file order.
COLUMNS: dict[str, tuple[str, ...]] = {
    "L1C": ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12",
            "QA10", "QA20", "QA60", "doa"),
    "L2A": ("doa", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12", "CLD", "EDG", "SAT"),
}
#: Spectral bands per level in wavelength order: the model input order of cropcore.
BANDS: dict[str, tuple[str, ...]] = {
    "L1C": ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"),
    "L2A": ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
}
#: Mask columns per level, and the one the paper uses as the cloud flag.
MASKS: dict[str, tuple[str, ...]] = {"L1C": ("QA10", "QA20", "QA60"), "L2A": ("CLD", "EDG", "SAT")}
CLOUD_MASK: dict[str, str] = {"L1C": "QA60", "L2A": "CLD"}
#: Band order the reference package feeds its models (string order for L1C): official checkpoints
#: expect their input in this order.
REFERENCE_BAND_ORDER: dict[str, tuple[str, ...]] = {
    "L1C": ("B1", "B10", "B11", "B12", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9"),
    "L2A": ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
}
#: Central wavelength in nanometres, for labelling bands by name and wavelength.
WAVELENGTH_NM: dict[str, int] = {
    "B1": 443, "B2": 490, "B3": 560, "B4": 665, "B5": 705, "B6": 740, "B7": 783, "B8": 842,
    "B8A": 865, "B9": 945, "B10": 1375, "B11": 1610, "B12": 2190,
}
#: Reflectances are stored as integers times this factor.
REFLECTANCE_SCALE = 1e-4
#: Time steps the paper's deep models see per parcel.
SEQUENCE_LENGTH = 45

#: The nine classes, in class-id order.
CLASSES: tuple[str, ...] = (
    "barley", "wheat", "rapeseed", "corn", "sunflower", "orchards", "nuts",
    "permanent meadows", "temporary meadows",
)
#: RPG crop codes of each class (the built-in class mapping). The orchard group of the official
#: mapping has 21 codes; the ones below are those documented by name. A downloaded
#: ``classmapping.csv`` always wins over this table.
CLASS_CODES: dict[str, tuple[str, ...]] = {
    "barley": ("ORH", "ORP"),
    "wheat": ("BTH", "BTP"),
    "rapeseed": ("CZH", "CZP"),
    "corn": ("MIS", "MIE", "MID"),
    "sunflower": ("TRN",),
    "orchards": ("VRG", "PFR", "PRU", "AGR", "ANA", "AVO", "BCA", "BER", "CAC", "CBT", "PVT", "PWT", "VGD"),
    "nuts": ("CAB", "CTG", "NOS", "NOX", "PIS"),
    "permanent meadows": ("PPH", "PRL"),
    "temporary meadows": ("PTR", "RGA"),
}
#: One fixed colour per class for every chart, map and legend.
CLASS_COLORS: dict[str, str] = {
    "barley": "#d4b13f",
    "wheat": "#9c5f24",
    "rapeseed": "#f0e01e",
    "corn": "#e8702a",
    "sunflower": "#8e44ad",
    "orchards": "#d81b60",
    "nuts": "#4e342e",
    "permanent meadows": "#1b6e34",
    "temporary meadows": "#8bc34a",
}

BASE_URL = "https://breizhcrops.s3.eu-central-1.amazonaws.com"
#: Environment variable that overrides BASE_URL (mirrors, local test servers).
BASE_URL_ENV = "CROPCORE_BASE_URL"
#: Published sizes in bytes of the extracted .h5 files (the integrity check).
H5_SIZES: dict[str, dict[str, int]] = {
    "L1C": {"frh01": 2559635960, "frh02": 2253658856, "frh03": 2493572704, "frh04": 1555075632,
            "belle-ile": 17038944, "kermaux": 1259784},
    "L2A": {"frh01": 987259904, "frh02": 803457960, "frh03": 890027448, "frh04": 639215848,
            "belle-ile": 8037952},
}
#: Parcel counts of the real release (paper, Figure 2a), used to scale the simulation.
PARCEL_COUNTS: dict[str, dict[str, int]] = {
    "L1C": {"frh01": 178613, "frh02": 140645, "frh03": 166391, "frh04": 122614},
    "L2A": {"frh01": 178632, "frh02": 140782, "frh03": 166367, "frh04": 122708},
}


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b) integers, the form pydeck layers take."""
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def check_region(region: str) -> str:
    """Normalise a region name, or raise a ValueError listing the valid ones."""
    name = str(region).lower()
    valid = REGIONS + EXTRA_REGIONS["L1C"]
    if name not in valid:
        raise ValueError(f"unknown region {region!r}; expected one of {', '.join(valid)}")
    return name


def check_level(level: str) -> str:
    """Normalise a processing level, or raise a ValueError listing the valid ones."""
    name = str(level).upper()
    if name not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
    return name


def check_device(device: str) -> str:
    """'cpu', 'cuda' or 'cuda:N', usable on this machine, or a ValueError saying why not (torch's own errors
    for an unknown or absent device come only at the first tensor, after the data has been read)."""
    import torch

    name = str(device).strip().lower()
    try:
        parsed = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; expected cpu, cuda or cuda:N") from None
    if parsed.type == "cpu":
        return "cpu"
    if parsed.type != "cuda":
        raise ValueError(f"unknown device {device!r}; expected cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is available to this torch ({torch.__version__})")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name
