"""The paper's split by department (section 4.2) as one table of modes.

The mode names are those of the reference training script, with the same meaning:

=========== ======================== ============ =====================================================
mode        train                    test         role
=========== ======================== ============ =====================================================
validation  FRH01, FRH02             FRH03        model selection; the best epoch by FRH03 loss is kept
evaluation1 FRH01, FRH02, FRH03      FRH04        Table 2 (top); also the FRH04 cross-evaluation fold
evaluation2 FRH01, FRH02, FRH04      FRH03        not in the paper (FRH03 was used for tuning)
evaluation3 FRH01, FRH03, FRH04      FRH02        cross-evaluation fold tested on FRH02
evaluation4 FRH02, FRH03, FRH04      FRH01        cross-evaluation fold tested on FRH01
=========== ======================== ============ =====================================================

``evaluation`` is accepted as an alias of ``evaluation1``. Evaluation modes train for a fixed number of
epochs and report the last one: no choice is ever made on their test region.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fold:
    """One train/test split by department."""

    mode: str
    train: tuple[str, ...]
    test: str

    @property
    def selects_best_epoch(self) -> bool:
        """Only validation mode may pick an epoch on its test region (FRH03 is the validation set)."""
        return self.mode == "validation"


FOLDS: dict[str, Fold] = {
    "validation": Fold("validation", ("frh01", "frh02"), "frh03"),
    "evaluation1": Fold("evaluation1", ("frh01", "frh02", "frh03"), "frh04"),
    "evaluation2": Fold("evaluation2", ("frh01", "frh02", "frh04"), "frh03"),
    "evaluation3": Fold("evaluation3", ("frh01", "frh03", "frh04"), "frh02"),
    "evaluation4": Fold("evaluation4", ("frh02", "frh03", "frh04"), "frh01"),
}
MODES: tuple[str, ...] = tuple(FOLDS)
#: Table 2 (top): trained on FRH01-03, tested on FRH04.
TABLE2_MODE = "evaluation1"
#: Table 2 (bottom): the cross-evaluation folds, by test region (FRH03 left out: used for tuning).
CROSS_EVALUATION: dict[str, str] = {"frh01": "evaluation4", "frh02": "evaluation3", "frh04": "evaluation1"}


def fold(mode: str) -> Fold:
    """The split of a mode name (case-insensitive; ``evaluation`` = ``evaluation1``).

    Raises:
        ValueError: naming the valid modes.
    """
    name = str(mode).lower()
    name = "evaluation1" if name == "evaluation" else name
    if name not in FOLDS:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return FOLDS[name]
