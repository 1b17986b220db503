"""The seven networks of the BreizhCrops benchmark and its Random Forest.

``build(name, input_dim=..., num_classes=..., sequence_length=..., **hparams)`` builds any of them with
the published-checkpoint settings as defaults; ``pretrained`` loads official or cropcore checkpoints.
"""

from cropcore.models.registry import SPECS, build, find_spec

NAMES: tuple[str, ...] = ("TempCNN", "MSResNet", "InceptionTime", "OmniScaleCNN", "LSTM", "StarRNN", "Transformer")

__all__ = ["NAMES", "SPECS", "build", "find_spec"]
