"""Per-project settings of the training loop (the domain models live in ``server.studio``)."""

from __future__ import annotations

from django.db import models

from server.studio.models import Project


class PromotionPolicy(models.TextChoices):
    AUTO_IF_BETTER = "auto_if_better"
    MANUAL = "manual"


class TrainingPolicy(models.Model):
    """How a project's retraining rounds end. A project without a row uses the defaults below."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="training_policy")
    promotion = models.CharField(max_length=16, choices=PromotionPolicy.choices, default=PromotionPolicy.AUTO_IF_BETTER)
    min_improvement = models.FloatField(default=0.0, help_text="val Dice gain a candidate needs for auto-promotion")
    updated_at = models.DateTimeField(auto_now=True)
