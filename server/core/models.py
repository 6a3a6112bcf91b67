"""Who belongs to which project, with which role: the table the access policy (``access.py``) reads.

``Membership.project`` refers to ``studio.Project`` by app label (Django's lazy model reference), so no Python
import goes from ``core`` up to the studio.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    """Project roles, lowest first: each role may do everything the roles before it may."""

    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Membership(models.Model):
    project = models.ForeignKey("studio.Project", on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    preferences = models.JSONField(
        default=dict, blank=True, help_text="the member's editor choices in this project (display, brush, layers)"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "studio_membership"  # the table predates the core app; its rows are kept as they are
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user")]
        ordering = ["id"]
