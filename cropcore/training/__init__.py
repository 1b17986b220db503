"""Training with the paper's protocol: splits by department, the epoch loop, run folders, DDP.

``train(resolve_config("TempCNN", mode="evaluation1"))`` trains one model into ``runs/<run_id>/``;
``cropcore train`` is the same from the command line.
"""

from cropcore.training.protocol import CROSS_EVALUATION, FOLDS, MODES, Fold, fold

__all__ = ["CROSS_EVALUATION", "FOLDS", "MODES", "Fold", "fold"]
