"""The work behind each task (filled in below)."""

from __future__ import annotations
