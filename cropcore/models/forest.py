"""Random Forest baseline of the BreizhCrops benchmark, on the 5-day grid features.

Source: Breiman, "Random forests", Machine Learning 45, 2001, with the settings of Rußwurm et al.,
BreizhCrops, ISPRS Archives XLIII-B2-2020, section 4 (500 trees, maximum depth 25, sqrt features);
the reference trained scikit-learn's ``RandomForestClassifier`` on the same features.

Input layout: ``(parcels, 71, bands)`` reflectance 0-1 from ``cropcore.data.grid_features`` (cloud-free
observations linearly interpolated on 71 dates, every 5 days of 2017), or already flattened
``(parcels, 71 * bands)``. The estimator is a scikit-learn Pipeline (flatten, forest) behind a small
estimator class, so ``get_params``/``set_params``/``clone``/grid search work as usual.
"""

from __future__ import annotations

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
        return self.pipeline_.predict(self._checked(features))

    def predict_proba(self, features: Any) -> np.ndarray:
        """Class probabilities (parcels, classes seen in fit), columns in ``classes_`` order."""
        return self.pipeline_.predict_proba(self._checked(features))

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
