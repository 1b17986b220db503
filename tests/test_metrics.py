"""The paper's scores against hand-computed values and against scikit-learn on random labels."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm

from cropcore.evaluation import metrics


# true:      0 0 0 1 1 2
# predicted: 0 0 1 1 2 2
TRUE = np.array([0, 0, 0, 1, 1, 2])
PREDICTED = np.array([0, 0, 1, 1, 2, 2])


def test_confusion_matrix_by_hand() -> None:
    confusion = metrics.confusion_matrix(TRUE, PREDICTED, num_classes=3)
    assert confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_scores_by_hand() -> None:
    confusion = metrics.confusion_matrix(TRUE, PREDICTED, num_classes=3)
    # 4 of 6 right; recalls 2/3, 1/2, 1 -> mean 13/18
    assert metrics.overall_accuracy(confusion) == pytest.approx(4 / 6)
    assert metrics.average_accuracy(confusion) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # precisions 1, 1/2, 1/2; F1: 0.8, 0.5, 2/3; supports 3, 2, 1
    per_class = metrics.per_class_scores(confusion)
    assert per_class["precision"] == pytest.approx([1.0, 0.5, 0.5])
    assert per_class["f1"] == pytest.approx([0.8, 0.5, 2 / 3])
    assert per_class["support"].tolist() == [3, 2, 1]
    assert metrics.weighted_f1(confusion) == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert metrics.macro_f1(confusion) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # p_o = 4/6; p_e = (3*2 + 2*2 + 1*2) / 36 = 1/3 -> kappa = (2/3 - 1/3) / (2/3) = 0.5
    assert metrics.cohen_kappa(confusion) == pytest.approx(0.5)


def test_absent_classes_do_not_count_and_zero_division_is_zero() -> None:
    confusion = metrics.confusion_matrix([0, 0, 1], [0, 0, 0], num_classes=9)
    assert metrics.average_accuracy(confusion) == pytest.approx(0.5)  # classes 0 and 1 only
    assert metrics.per_class_scores(confusion)["precision"][1] == 0.0
    assert metrics.cohen_kappa(metrics.confusion_matrix([3, 3], [3, 3])) == 0.0
    assert metrics.summarize(np.zeros((9, 9)))["overall_accuracy"] == 0.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        metrics.confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="0..8"):
        metrics.confusion_matrix([0, 9], [0, 1])


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_sklearn_on_random_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 9, 500)
    true[true == 4] = 5  # one class absent from the truth
    predicted = np.where(rng.random(500) < 0.6, true, rng.integers(0, 9, 500))
    report = metrics.region_report(true, predicted)
    assert report["overall_accuracy"] == pytest.approx(skm.accuracy_score(true, predicted))
    assert report["average_accuracy"] == pytest.approx(skm.balanced_accuracy_score(true, predicted))
    assert report["weighted_f1"] == pytest.approx(skm.f1_score(true, predicted, average="weighted", zero_division=0))
    assert report["macro_f1"] == pytest.approx(skm.f1_score(true, predicted, average="macro", zero_division=0))
    assert report["kappa"] == pytest.approx(skm.cohen_kappa_score(true, predicted))
    assert report["confusion"] == skm.confusion_matrix(true, predicted, labels=range(9)).tolist()
    precision, recall, f1, support = skm.precision_recall_fscore_support(true, predicted, labels=range(9),
                                                                         zero_division=0)
    assert [row["precision"] for row in report["per_class"]] == pytest.approx(precision)
    assert [row["recall"] for row in report["per_class"]] == pytest.approx(recall)
    assert [row["f1"] for row in report["per_class"]] == pytest.approx(f1)
    assert [row["support"] for row in report["per_class"]] == support.tolist()


def test_format_report_is_readable() -> None:
    text = metrics.format_report("frh04", metrics.region_report(TRUE, PREDICTED))
    assert "frh04: 6 parcels" in text and "Cohen's kappa" in text and "temporary meadows" in text
