"""LViT Studio's numeric core: models, text features, losses, metrics, training and inference (no Django).

The names below are loaded on first use (PEP 562), so ``import ml.tables`` or ``import ml.laterality`` stays
torch-free (the web process reads report tables and mirrors sentences without loading torch); ``ml.LViT`` imports
``ml.models`` when it is first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "LViTConfig": "ml.config",
    "LViTDataset": "ml.data",
    "Sample": "ml.data",
    "scan_split": "ml.data",
    "split_labeled": "ml.data",
    "EPIStore": "ml.epi",
    "epi_update": "ml.epi",
    "DiceBCELoss": "ml.losses",
    "LVLoss": "ml.losses",
    "MetricAccumulator": "ml.metrics",
    "MetricSummary": "ml.metrics",
    "dice_iou_per_image": "ml.metrics",
    "LViT": "ml.models",
    "UNet": "ml.models",
    "build_model": "ml.models",
    "count_macs": "ml.models.counting",
    "count_parameters": "ml.models.counting",
    "Prediction": "ml.predict",
    "Predictor": "ml.predict",
    "load_checkpoint": "ml.predict",
    "load_model": "ml.predict",
    "save_checkpoint": "ml.predict",
    "TextEmbedder": "ml.text",
    "TrainConfig": "ml.train",
    "Trainer": "ml.train",
    "evaluate": "ml.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # static analysers see the real names
    from ml.config import LViTConfig as LViTConfig
    from ml.data import LViTDataset as LViTDataset
    from ml.data import Sample as Sample
    from ml.data import scan_split as scan_split
    from ml.data import split_labeled as split_labeled
    from ml.epi import EPIStore as EPIStore
    from ml.epi import epi_update as epi_update
    from ml.losses import DiceBCELoss as DiceBCELoss
    from ml.losses import LVLoss as LVLoss
    from ml.metrics import MetricAccumulator as MetricAccumulator
    from ml.metrics import MetricSummary as MetricSummary
    from ml.metrics import dice_iou_per_image as dice_iou_per_image
    from ml.models import LViT as LViT
    from ml.models import UNet as UNet
    from ml.models import build_model as build_model
    from ml.models.counting import count_macs as count_macs
    from ml.models.counting import count_parameters as count_parameters
    from ml.predict import Prediction as Prediction
    from ml.predict import Predictor as Predictor
    from ml.predict import load_checkpoint as load_checkpoint
    from ml.predict import load_model as load_model
    from ml.predict import save_checkpoint as save_checkpoint
    from ml.text import TextEmbedder as TextEmbedder
    from ml.train import TrainConfig as TrainConfig
    from ml.train import Trainer as Trainer
    from ml.train import evaluate as evaluate
