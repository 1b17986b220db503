"""Classification scores of the BreizhCrops paper, computed from a confusion matrix with numpy.

The paper reports four numbers per test region: overall accuracy, average accuracy (mean per-class
recall), weighted F1 and Cohen's kappa. We add macro F1 and the per-class table. Everything derives from
one confusion matrix so the numbers can never disagree with each other, and no scikit-learn call is
needed at inference time (the tests check agreement with ``sklearn.metrics``).

Conventions (those of scikit-learn's defaults, so results compare directly):
    * average accuracy averages recall over the classes present in the truth
      (``sklearn.metrics.balanced_accuracy_score``);
    * weighted F1 weights each class's F1 by its support in the truth;
    * macro F1 averages F1 over the classes present in the truth or the prediction;
    * a ratio with a zero denominator is 0 (scikit-learn's ``zero_division=0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cropcore.constants import CLASSES

#: The paper's four scores, in Table 2 row order, with their display names.
PAPER_METRICS: dict[str, str] = {
    "overall_accuracy": "overall accuracy",
    "average_accuracy": "average accuracy",
    "weighted_f1": "weighted F1",
    "kappa": "Cohen's kappa",
}


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int = len(CLASSES)) -> np.ndarray:
    """Counts [num_classes, num_classes]: row = true class, column = predicted class.

    Raises:
        ValueError: if the arrays differ in length or hold ids outside 0..num_classes-1.
    """
    true = np.asarray(true, dtype=np.int64).ravel()
    predicted = np.asarray(predicted, dtype=np.int64).ravel()
    if true.shape != predicted.shape:
        raise ValueError(f"true and predicted differ in length: {true.size} vs {predicted.size}")
    for name, ids in (("true", true), ("predicted", predicted)):
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            raise ValueError(f"{name} class ids must lie in 0..{num_classes - 1}, got {ids.min()}..{ids.max()}")
    flat = true * num_classes + predicted
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio that is 0 where the denominator is 0 (no warnings)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def per_class_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    confusion = np.asarray(confusion, dtype=np.float64)
    hits = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = _ratio(hits, predicted)
    recall = _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def overall_accuracy(confusion: np.ndarray) -> float:
    """Share of parcels classified correctly."""
    return float(_ratio(np.trace(confusion), np.sum(confusion)))


def average_accuracy(confusion: np.ndarray) -> float:
    """Mean recall over the classes present in the truth (balanced accuracy)."""
    scores = per_class_scores(confusion)
    present = scores["support"] > 0
    return float(scores["recall"][present].mean()) if present.any() else 0.0


def weighted_f1(confusion: np.ndarray) -> float:
    """F1 per class averaged with the classes' true supports as weights."""
    scores = per_class_scores(confusion)
    return float(_ratio(np.sum(scores["f1"] * scores["support"]), np.sum(scores["support"])))


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean F1 over classes present in the truth or the prediction."""
    confusion = np.asarray(confusion)
    present = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
    f1 = per_class_scores(confusion)["f1"]
    return float(f1[present].mean()) if present.any() else 0.0


def cohen_kappa(confusion: np.ndarray) -> float:
    """Agreement beyond chance: (p_observed - p_expected) / (1 - p_expected)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    if total == 0:
        return 0.0
    observed = np.trace(confusion) / total
    expected = float(np.sum(confusion.sum(axis=0) * confusion.sum(axis=1))) / total**2
    return float(_ratio(observed - expected, 1.0 - expected)) if expected != 1.0 else 0.0


def summarize(confusion: np.ndarray) -> dict[str, float]:
    """The paper's four scores plus macro F1, as plain floats."""
    return {
        "overall_accuracy": overall_accuracy(confusion),
        "average_accuracy": average_accuracy(confusion),
        "weighted_f1": weighted_f1(confusion),
        "kappa": cohen_kappa(confusion),
        "macro_f1": macro_f1(confusion),
    }


def region_report(
    true: np.ndarray, predicted: np.ndarray, class_names: Sequence[str] = CLASSES
) -> dict[str, Any]:
    """Everything reported for one test region, JSON-ready.

    Returns:
        ``{"parcels", overall_accuracy, average_accuracy, weighted_f1, kappa, macro_f1, "classes",
        "per_class": [{class, precision, recall, f1, support}], "confusion": [[int]]}``.
    """
    confusion = confusion_matrix(true, predicted, len(class_names))
    scores = per_class_scores(confusion)
    per_class = [
        {
            "class": name,
            "precision": float(scores["precision"][k]),
            "recall": float(scores["recall"][k]),
            "f1": float(scores["f1"][k]),
            "support": int(scores["support"][k]),
        }
        for k, name in enumerate(class_names)
    ]
    return {
        "parcels": int(confusion.sum()),
        **summarize(confusion),
        "classes": list(class_names),
        "per_class": per_class,
        "confusion": confusion.astype(int).tolist(),
    }


def format_report(region: str, report: dict[str, Any]) -> str:
    """A readable block: the five scores, then the per-class table, then the confusion matrix."""
    lines = [f"{region}: {report['parcels']} parcels"]
    for key, label in {**PAPER_METRICS, "macro_f1": "macro F1"}.items():
        lines.append(f"  {label:<17} {report[key]:.4f}")
    width = max(len(name) for name in report["classes"])
    lines.append(f"  {'class':<{width}}  precision  recall     f1  support")
    for row in report["per_class"]:
        lines.append(
            f"  {row['class']:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}"
            f"  {row['support']:7d}"
        )
    lines.append("  confusion (rows = true, columns = predicted, class ids 0..8):")
    for k, row in enumerate(report["confusion"]):
        lines.append(f"  {k} " + " ".join(f"{count:6d}" for count in row))
    return "\n".join(lines)
