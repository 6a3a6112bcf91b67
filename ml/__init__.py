"""LViT Studio's numeric core: models, text features, losses, metrics, training and inference (no Django)."""

from __future__ import annotations

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
