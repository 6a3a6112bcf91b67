"""Fixtures for the security suite: the studio fixtures (people, token clients, media in a temporary folder)."""

from __future__ import annotations

from tests.server.conftest import (  # noqa: F401  (pytest finds fixtures by name)
    People,
    _media,
    case,
    collab_client,
    outsider_client,
    owner_client,
    people,
)
