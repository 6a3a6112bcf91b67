"""LViT Studio's numeric core: models, text features, losses, metrics, training and inference (no Django)."""

from __future__ import annotations

from ml.config import LViTConfig as LViTConfig
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
