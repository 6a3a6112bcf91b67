"""Hook points for the workers: connect receivers here instead of editing services.

``case_needs_proposal`` is sent (inside ``transaction.on_commit``, so only for committed data) when a case is
uploaded or its report changes. Receivers get ``case_id`` and ``reason`` ("uploaded" | "report_changed").
By default nothing is connected, so the server runs without workers. The workers app connects e.g.::

    from server.studio.signals_hooks import case_needs_proposal
    case_needs_proposal.connect(lambda sender, case_id, **kw: propose_mask.delay(case_id), dispatch_uid="propose")
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

case_needs_proposal = Signal()  # kwargs: case_id: int, reason: str
mask_accepted = Signal()  # kwargs: case_id: int, mask_id: int
model_activated = Signal()  # kwargs: project_id: int, model_version_id: int


def on_case_needs_proposal(case_id: int, *, reason: str = "uploaded") -> None:
    """Announce, once the surrounding transaction commits, that ``case_id`` wants a fresh mask proposal."""
    transaction.on_commit(lambda: case_needs_proposal.send(sender=None, case_id=case_id, reason=reason))


def on_mask_accepted(case_id: int, mask_id: int) -> None:
    transaction.on_commit(lambda: mask_accepted.send(sender=None, case_id=case_id, mask_id=mask_id))


def on_model_activated(project_id: int, model_version_id: int) -> None:
    transaction.on_commit(
        lambda: model_activated.send(sender=None, project_id=project_id, model_version_id=model_version_id)
    )
