"""Pure figure and table builders for the Train and Errors pages: logs and predictions in, plotly out.

Scores come from cropcore.evaluation.metrics (one confusion matrix per region), so the page agrees
with `cropcore evaluate` by construction.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from cropcore.constants import CLASSES
from cropcore.evaluation import metrics

#: The paper's four scores: metrics key -> row label of Table 2.
TABLE2_ROWS: dict[str, str] = {
    "overall_accuracy": "overall accuracy",
    "average_accuracy": "average accuracy",
    "weighted_f1": "weighted F1",
    "kappa": "Cohen's kappa",
}


def region_confusions(predictions: pd.DataFrame) -> dict[str, np.ndarray]:
    """Confusion matrix (rows true, columns predicted) of each region in a predictions table."""
    return {
        str(region): metrics.confusion_matrix(group["true"].to_numpy(), group["predicted"].to_numpy())
        for region, group in predictions.groupby("region", sort=True)
    }


def region_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per region: parcels and the paper's four scores plus macro F1."""
    rows = [
        {"region": region, "parcels": int(confusion.sum()), **metrics.summarize(confusion)}
        for region, confusion in region_confusions(predictions).items()
    ]
    return pd.DataFrame(rows, columns=["region", "parcels", *TABLE2_ROWS, "macro_f1"])


def per_class_table(confusion: np.ndarray) -> pd.DataFrame:
    """Precision, recall, F1 and support per class."""
    scores = metrics.per_class_scores(confusion)
    return pd.DataFrame({"class": list(CLASSES), **{key: scores[key] for key in ("precision", "recall", "f1", "support")}})


def normalise_rows(confusion: np.ndarray) -> np.ndarray:
    """Each row divided by its total (recall on the diagonal); empty rows stay 0."""
    confusion = np.asarray(confusion, dtype=float)
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals != 0)


def confusion_heatmap(confusion: np.ndarray, normalised: bool = False, title: str = "") -> go.Figure:
    """Heatmap of a confusion matrix (rows true, columns predicted), counts or row-normalised."""
    values = normalise_rows(confusion) if normalised else np.asarray(confusion)
    text = [[f"{value:.2f}" if normalised else f"{int(value)}" for value in row] for row in values]
    figure = go.Figure(go.Heatmap(
        z=values, x=list(CLASSES), y=list(CLASSES), text=text, texttemplate="%{text}",
        colorscale="Blues", zmin=0, zmax=1 if normalised else None,
        hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
        colorbar={"title": "share of true class" if normalised else "parcels"},
    ))
    figure.update_layout(
        title=title or ("Confusion matrix, row-normalised" if normalised else "Confusion matrix, counts"),
        xaxis_title="predicted class", yaxis_title="true class", yaxis_autorange="reversed",
        height=520, margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return figure


def per_class_bars(table: pd.DataFrame) -> go.Figure:
    """Grouped bars of precision, recall and F1 per class."""
    long = table.melt(id_vars="class", value_vars=["precision", "recall", "f1"], var_name="score")
    figure = px.bar(long, x="class", y="value", color="score", barmode="group",
                    category_orders={"class": list(CLASSES)})
    figure.update_layout(yaxis_range=[0, 1], height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return figure


def confused_pairs(confusion: np.ndarray, top: int = 10) -> pd.DataFrame:
    """Most frequent off-diagonal (true, predicted) pairs with counts and share of the true class."""
    confusion = np.asarray(confusion)
    shares = normalise_rows(confusion)
    true_ids, predicted_ids = np.nonzero(confusion * (1 - np.eye(len(confusion), dtype=confusion.dtype)))
    counts = confusion[true_ids, predicted_ids]
    order = np.argsort(-counts, kind="stable")[:top]
    return pd.DataFrame({
        "true": [CLASSES[k] for k in true_ids[order]],
        "predicted": [CLASSES[k] for k in predicted_ids[order]],
        "parcels": counts[order].astype(int),
        "share of true class": shares[true_ids[order], predicted_ids[order]],
    })


def pair_parcels(predictions: pd.DataFrame, region: str, true: str, predicted: str) -> pd.DataFrame:
    """Parcels of a region with this true class predicted as that class, least confident first."""
    selected = predictions[
        (predictions["region"] == region)
        & (predictions["true"] == CLASSES.index(true))
        & (predictions["predicted"] == CLASSES.index(predicted))
    ]
    return selected.sort_values("confidence", kind="stable")[["id", "region", "true", "predicted", "confidence"]]


def table2(scores: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """The paper's Table 2 layout: rows OA, AA, weighted F1, kappa; one column per run label."""
    frame = pd.DataFrame({label: [values.get(key, np.nan) for key in TABLE2_ROWS] for label, values in scores.items()},
                         index=list(TABLE2_ROWS.values()))
    frame.index.name = "metric"
    return frame


def comparison_bars(table: pd.DataFrame) -> go.Figure:
    """One bar group per metric (rows of a Table 2 frame), one bar per run."""
    long = table.reset_index().melt(id_vars="metric", var_name="run", value_name="score")
    figure = px.bar(long, x="run", y="score", color="run", facet_col="metric",
                    category_orders={"metric": list(table.index)})
    figure.for_each_annotation(lambda annotation: annotation.update(text=annotation.text.split("=")[-1]))
    figure.update_xaxes(showticklabels=False, title="")
    figure.update_layout(height=380, yaxis_range=[0, 1], margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         legend_title_text="run")
    return figure


# --- Train page ---------------------------------------------------------------------------------

def loss_figure(log: pd.DataFrame) -> go.Figure:
    """Train and test loss per epoch from a run's log.csv rows."""
    figure = go.Figure()
    for column, name in (("train_loss", "train loss"), ("test_loss", "test loss")):
        if column in log:
            figure.add_scatter(x=log["epoch"], y=log[column], name=name, mode="lines+markers")
    figure.update_layout(title="Loss", xaxis_title="epoch", yaxis_title="NLL loss", height=300,
                         margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def score_figure(log: pd.DataFrame) -> go.Figure:
    """The paper's four scores on the test region per epoch."""
    figure = go.Figure()
    for column, name in TABLE2_ROWS.items():
        if column in log:
            figure.add_scatter(x=log["epoch"], y=log[column], name=name, mode="lines+markers")
    figure.update_layout(title="Test scores", xaxis_title="epoch", yaxis_range=[0, 1], height=300,
                         margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure
