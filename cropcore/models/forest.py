"""Random Forest baseline of the BreizhCrops benchmark, on the 5-day grid features.

Source: Breiman, "Random forests", Machine Learning 45, 2001, with the settings of Rußwurm et al.,
BreizhCrops, ISPRS Archives XLIII-B2-2020, section 4 (500 trees, maximum depth 25, sqrt features);
the reference trained scikit-learn's ``RandomForestClassifier`` on the same features.

Input layout: ``(parcels, 71, bands)`` reflectance 0-1 from ``cropcore.data.grid_features`` (cloud-free
observations linearly interpolated on 71 dates, every 5 days of 2017), or already flattened
``(parcels, 71 * bands)``. The estimator is a scikit-learn Pipeline (flatten, forest) behind a small
estimator class, so ``get_params``/``set_params``/``clone``/grid search work as usual.

``save_forest``/``load_forest`` keep a fitted forest in skops' format rather than a pickle: loading reads
data and refuses any type a cropcore forest does not hold, so a planted file cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_is_fitted


def flatten_features(features: Any) -> np.ndarray:
    """(parcels, dates, bands) -> (parcels, dates * bands) float32; 2-D input passes through."""
    array = np.asarray(features, dtype=np.float32)
    if array.ndim == 3:
        return array.reshape(array.shape[0], -1)
    if array.ndim == 2:
        return array
    raise ValueError(f"expected features (parcels, dates, bands) or (parcels, features), got shape {array.shape}")


class RandomForest(ClassifierMixin, BaseEstimator):
    """The paper's Random Forest on grid features: 500 trees, depth 25, sqrt features, all cores.

    Args:
        n_estimators: Number of trees.
        max_depth: Maximum tree depth.
        max_features: Features tried per split (scikit-learn's meaning).
        n_jobs: Parallel jobs (-1: all cores).
        random_state: Seed (None: not repeatable).
        class_weight: Passed to the forest (None, as in the paper).
    """

    def __init__(
        self,
        n_estimators: int = 500,
        max_depth: int | None = 25,
        max_features: str | int | float | None = "sqrt",
        n_jobs: int | None = -1,
        random_state: int | None = None,
        class_weight: Any = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.max_features = max_features
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.class_weight = class_weight

    def make_pipeline(self) -> Pipeline:
        """A fresh, unfitted Pipeline of the flattening step and the forest with this estimator's settings."""
        forest = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            max_features=self.max_features,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
            class_weight=self.class_weight,
        )
        return Pipeline([("flatten", FunctionTransformer(flatten_features)), ("forest", forest)])

    def fit(self, features: Any, labels: Any) -> RandomForest:
        """Fit on features (parcels, 71, bands) and class ids (parcels,)."""
        flat = flatten_features(features)
        labels = np.asarray(labels)
        if labels.shape != (flat.shape[0],):
            raise ValueError(f"labels must have shape ({flat.shape[0]},), got {labels.shape}")
        self.pipeline_ = self.make_pipeline().fit(flat, labels)
        self.classes_ = self.pipeline_.classes_
        self.n_features_in_ = flat.shape[1]
        return self

    def predict(self, features: Any) -> np.ndarray:
        """Class ids (parcels,)."""
        flat = self._checked(features)  # before pipeline_ is looked up: NotFittedError, not AttributeError
        return self.pipeline_.predict(flat)

    def predict_proba(self, features: Any) -> np.ndarray:
        """Class probabilities (parcels, classes seen in fit), columns in ``classes_`` order."""
        flat = self._checked(features)
        return self.pipeline_.predict_proba(flat)

    @property
    def feature_importances_(self) -> np.ndarray:
        """Impurity importances per flattened feature (date-major: date 0 bands, date 1 bands, ...)."""
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.named_steps["forest"].feature_importances_

    def _checked(self, features: Any) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        flat = flatten_features(features)
        if flat.shape[1] != self.n_features_in_:
            raise ValueError(f"features have {flat.shape[1]} values per parcel, the forest was fitted on "
                             f"{self.n_features_in_}")
        return flat


#: The types a saved forest holds beyond those skops trusts by default; anything else is refused on load.
_FOREST_TYPES: tuple[str, ...] = (
    f"{__name__}.RandomForest",
    f"{__name__}.flatten_features",
    "sklearn.tree._tree.Tree",
)


def save_forest(forest: RandomForest, path: Path) -> None:
    """Write a fitted forest in skops' format, atomically (a temporary file moved into place)."""
    import skops.io

    from cropcore.atomic import write_with

    check_is_fitted(forest, "pipeline_")
    write_with(Path(path), lambda temporary: skops.io.dump(forest, temporary))


def load_forest(path: Path) -> RandomForest:
    """A forest written by ``save_forest``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a saved forest, or holds types a forest never holds (not loaded).
    """
    import zipfile

    import skops.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved forest at {path}")
    try:
        unexpected = sorted(set(skops.io.get_untrusted_types(file=path)) - set(_FOREST_TYPES))
        if unexpected:
            raise ValueError(f"{path} holds types a cropcore forest never holds, so it was not loaded: {unexpected}")
        forest = skops.io.load(path, trusted=list(_FOREST_TYPES))
    except (zipfile.BadZipFile, KeyError, OSError, TypeError) as error:
        raise ValueError(f"{path} is not a forest saved by cropcore ({type(error).__name__}: {error})") from None
    if not isinstance(forest, RandomForest):
        raise ValueError(f"{path} holds a {type(forest).__name__}, not a cropcore RandomForest")
    return forest
