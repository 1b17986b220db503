"""The paper's Table 2 layout: rows OA, AA, weighted F1, kappa; columns RF and the seven networks.

The top block is the FRH04 test of models trained on FRH01-03; the bottom block is the cross-evaluation
(test FRH01, FRH02, FRH04; mean ± std over the three folds). The paper's published FRH04 numbers are
kept here so that every rendering can show them beside ours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from cropcore.evaluation.metrics import PAPER_METRICS

#: Column order of Table 2 (model name -> column header).
COLUMNS: dict[str, str] = {
    "RandomForest": "RF", "TempCNN": "TempCNN", "MSResNet": "MSResNet", "InceptionTime": "InceptionTime",
    "OmniScaleCNN": "OmniScaleCNN", "LSTM": "LSTM", "StarRNN": "StarRNN", "Transformer": "Transformer",
}
ROW_LABELS: dict[str, str] = {
    "overall_accuracy": "OA", "average_accuracy": "AA", "weighted_f1": "weighted F1", "kappa": "kappa",
}
#: Paper, Table 2 (top): FRH04 test of models trained on FRH01-03, (OA, AA, weighted F1, kappa).
PAPER: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "L1C": {"RandomForest": (.77, .53, .75, .69), "TempCNN": (.79, .55, .78, .73), "MSResNet": (.78, .51, .76, .70),
            "InceptionTime": (.79, .56, .78, .73), "OmniScaleCNN": (.77, .53, .74, .70), "LSTM": (.80, .57, .79, .74),
            "StarRNN": (.79, .58, .77, .72), "Transformer": (.80, .59, .79, .74)},
    "L2A": {"RandomForest": (.78, .54, .77, .71), "TempCNN": (.79, .55, .79, .73), "MSResNet": (.77, .54, .77, .70),
            "InceptionTime": (.77, .53, .77, .70), "OmniScaleCNN": (.73, .52, .72, .65), "LSTM": (.80, .57, .80, .74),
            "StarRNN": (.79, .56, .79, .73), "Transformer": (.80, .58, .80, .75)},
}
TOP_REGION = "frh04"
CROSS_REGIONS: tuple[str, ...] = ("frh01", "frh02", "frh04")

#: scores[model][test_region][metric] -> value
Scores = Mapping[str, Mapping[str, Mapping[str, float]]]


def _models(scores: Scores) -> list[str]:
    return [model for model in COLUMNS if model in scores] + [model for model in scores if model not in COLUMNS]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (std NaN with fewer than two folds)."""
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))


def long_table(scores: Scores, level: str) -> pd.DataFrame:
    """One row per (section, metric, model): value, std, folds, paper. The CSV form of Table 2."""
    rows = []
    paper = PAPER.get(level, {})
    for model in _models(scores):
        for position, metric in enumerate(PAPER_METRICS):
            top = scores[model].get(TOP_REGION, {}).get(metric, math.nan)
            published = paper[model][position] if model in paper else math.nan
            rows.append({"section": f"test {TOP_REGION}", "metric": metric, "model": COLUMNS.get(model, model),
                         "value": top, "std": math.nan, "folds": int(not math.isnan(top)), "paper": published})
            values = [scores[model][region][metric] for region in CROSS_REGIONS if region in scores[model]]
            mean, std = _mean_std(values)
            rows.append({"section": "cross-evaluation", "metric": metric, "model": COLUMNS.get(model, model),
                         "value": mean, "std": std, "folds": len(values), "paper": math.nan})
    return pd.DataFrame(rows)


def _cell(value: float, std: float | None = None, folds: int | None = None) -> str:
    """'0.512', '0.512 ± 0.010', or with '(2 of 3 folds)' when a mean misses some folds."""
    if value is None or math.isnan(value):
        return "–"
    text = f"{value:.3f}" if std is None or math.isnan(std) else f"{value:.3f} ± {std:.3f}"
    if folds is not None and folds < len(CROSS_REGIONS):
        text += f" ({folds} of {len(CROSS_REGIONS)} folds)"
    return text


def _wide(table: pd.DataFrame, headers: Sequence[str], section: str, column: str, with_std: bool) -> pd.DataFrame:
    """Rows = the four metrics, columns = models, cells formatted (with ± std and missing folds when asked)."""
    part = table[table["section"] == section].set_index(["metric", "model"])
    cells = [
        [_cell(part.loc[(metric, header), column], *((part.loc[(metric, header), "std"],
                                                      int(part.loc[(metric, header), "folds"])) if with_std else ()))
         for header in headers]
        for metric in PAPER_METRICS
    ]
    return pd.DataFrame(cells, index=[ROW_LABELS[metric] for metric in PAPER_METRICS], columns=list(headers))


def blocks(scores: Scores, level: str) -> dict[str, pd.DataFrame]:
    """Wide tables (rows = metrics, columns = models): ours on FRH04, the cross-evaluation (once a fold other than
    FRH04 has run), the paper."""
    table = long_table(scores, level)
    headers = [COLUMNS.get(model, model) for model in _models(scores)]
    top = f"test {TOP_REGION}"
    tables = {f"{level}: trained on FRH01-03, tested on FRH04": _wide(table, headers, top, "value", False)}
    if any(region != TOP_REGION for model in scores.values() for region in model):  # a cross-evaluation fold ran
        tables[f"{level}: cross-evaluation, tested on FRH01, FRH02, FRH04 (mean ± std)"] = _wide(
            table, headers, "cross-evaluation", "value", True)
    tables[f"{level}: the paper (Table 2, FRH04, real data)"] = _wide(table, headers, top, "paper", False)
    return tables


def _markdown(frame: pd.DataFrame) -> str:
    header = "| | " + " | ".join(frame.columns) + " |"
    rule = "| --- |" + " --- |" * len(frame.columns)
    rows = zip(frame.index, frame.values.tolist(), strict=True)
    body = ["| " + label + " | " + " | ".join(row) + " |" for label, row in rows]
    return "\n".join([header, rule, *body])


def render_markdown(scores: Scores, level: str, *, notes: Sequence[str] = ()) -> str:
    """Table 2 as Markdown, our blocks followed by the paper's, with notes (data, preset) on top."""
    parts = [f"# Table 2 layout, {level}", ""]
    parts += [f"- {note}" for note in notes]
    for title, frame in blocks(scores, level).items():
        parts += ["", f"## {title}", "", _markdown(frame)]
    return "\n".join(parts) + "\n"


def render_text(scores: Scores, level: str) -> str:
    """Table 2 as fixed-width text for the terminal."""
    parts = []
    for title, frame in blocks(scores, level).items():
        parts += [title, frame.to_string(), ""]
    return "\n".join(parts)
