"""Scores, predictions and the paper's Table 2.

``metrics`` computes the paper's four scores (and macro F1, per-class table, confusion) with numpy;
``inference`` turns a network and regions into a deterministic predictions table; the ``command``,
``predict`` and ``benchmark`` modules are the `cropcore evaluate / predict / benchmark` commands.
"""

from cropcore.evaluation.metrics import PAPER_METRICS, confusion_matrix, region_report, summarize

__all__ = ["PAPER_METRICS", "confusion_matrix", "region_report", "summarize"]
