"""RPG crop code -> BreizhCrops class id.

The official ``classmapping.csv`` (an unnamed leading index column, then ``id,classname,code``)
wins when it lies under the data root; otherwise the built-in table of `cropcore.constants` is
used, so the loader works offline and on the simulated demo alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cropcore.constants import CLASS_CODES, CLASSES
from cropcore.data import layout
from cropcore.data.errors import DataFormatError

#: Columns the official file carries after its unnamed index column.
MAPPING_COLUMNS: tuple[str, ...] = ("id", "classname", "code")


@dataclass(frozen=True)
class ClassMapping:
    """Which RPG codes belong to which class.

    Attributes:
        codes: RPG code (3 letters, upper case) -> class id.
        classnames: class names in class-id order.
        source: the csv it was read from, or None for the built-in table.
    """

    codes: dict[str, int]
    classnames: tuple[str, ...]
    source: Path | None = None

    def classid(self, code: str) -> int | None:
        """Class id of an RPG code, None when the code is outside the mapping (parcel dropped)."""
        return self.codes.get(str(code).strip().upper())

    def digest(self) -> str:
        """Stable hash of the mapping: a packed store built with another mapping is stale."""
        payload = json.dumps({"codes": sorted(self.codes.items()), "classnames": self.classnames})
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def builtin_classmapping() -> ClassMapping:
    """The mapping of `cropcore.constants.CLASS_CODES`, class ids in `CLASSES` order."""
    codes = {code: classid for classid, name in enumerate(CLASSES) for code in CLASS_CODES[name]}
    return ClassMapping(codes=codes, classnames=CLASSES)


def read_classmapping(path: Path) -> ClassMapping:
    """Read an official ``classmapping.csv``.

    Raises:
        DataFormatError: the file is not a table with columns ``id, classname, code``, its ids
            are not 0..K-1, a class id has two names, or a code maps to two classes.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, index_col=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataFormatError(f"{path}: cannot read the class mapping ({error}); expected a csv "
                              f"with an index column then columns {', '.join(MAPPING_COLUMNS)}") from error
    missing = [column for column in MAPPING_COLUMNS if column not in table.columns]
    if missing:
        raise DataFormatError(f"{path}: class mapping lacks column(s) {', '.join(missing)}; expected an "
                              f"index column then columns {', '.join(MAPPING_COLUMNS)}, "
                              f"found {', '.join(map(str, table.columns))}")
    if table.empty:
        raise DataFormatError(f"{path}: class mapping has no rows")
    ids = pd.to_numeric(table["id"], errors="coerce")
    if ids.isna().any() or (ids % 1 != 0).any():
        raise DataFormatError(f"{path}: class mapping column 'id' must hold integers")
    table = table.assign(id=ids.astype("int64"), code=table["code"].astype(str).str.strip().str.upper())
    return _mapping_from_table(table, path)


def _mapping_from_table(table: pd.DataFrame, path: Path) -> ClassMapping:
    """Check a parsed mapping table for consistency and build the ClassMapping."""
    names = table.groupby("id")["classname"].unique()
    if list(names.index) != list(range(len(names))):
        raise DataFormatError(f"{path}: class ids must be 0..K-1, found {sorted(names.index)}")
    ambiguous = [str(classid) for classid, values in names.items() if len(values) > 1]
    if ambiguous:
        raise DataFormatError(f"{path}: class id(s) {', '.join(ambiguous)} carry several class names")
    targets = table.groupby("code")["id"].nunique()
    conflicting = sorted(targets.index[targets > 1])
    if conflicting:
        raise DataFormatError(f"{path}: code(s) {', '.join(conflicting)} map to several classes")
    codes = {str(code): int(classid) for code, classid in zip(table["code"], table["id"])}
    return ClassMapping(codes=codes, classnames=tuple(str(values[0]) for values in names), source=path)


def load_classmapping(root: Path | str | None = None) -> ClassMapping:
    """The downloaded ``classmapping.csv`` under ``root`` when present, else the built-in table."""
    if root is not None:
        path = layout.classmapping_path(Path(root))
        if path.exists():
            return read_classmapping(path)
    return builtin_classmapping()
