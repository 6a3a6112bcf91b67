"""The project's fixed validation set: frozen by the first training round, versioned when reviewers add cases.

A round asks :func:`validation_set_for_round` which cases to validate on. The first round freezes the set: the
accepted ``val`` cases when there are any, else a seeded pick of accepted ``train`` cases (every 5th, at least
one; the seed is recorded). Later rounds reuse the newest version unchanged, unless reviewers accepted new ``val``
cases (or a case left the set: deleted, no longer accepted, moved to ``test``), which makes a new version. Cases in
the set are never trained on; ``test`` cases are never trained on or validated on.
"""

from __future__ import annotations

import random
from typing import Any

from django.db import transaction

from server.studio import selectors
from server.studio.models import Project, Split, ValidationSet
from server.studio.services.common import audit

PICK_EVERY = 5  # a seeded pick holds out one accepted train case in five


def _seeded_pick(ids: list[int], seed: int) -> list[int]:
    """A reproducible pick of ``len(ids) // 5`` (at least one) of ``ids``; none when fewer than two."""
    if len(ids) < 2:
        return []
    k = max(1, len(ids) // PICK_EVERY)
    return sorted(random.Random(seed).sample(sorted(ids), k))


@transaction.atomic
def validation_set_for_round(*, project: Project, seed: int = 0) -> ValidationSet | None:
    """The validation set a training round uses (the newest version, made or updated here); ``None`` when the
    project has too few accepted cases to hold any out (one accepted train case and no ``val`` case)."""
    Project.objects.select_for_update().filter(pk=project.pk).first()  # one version at a time
    current = selectors.validation_set_current(project_id=project.pk)
    accepted_val = {c.pk for c, _ in selectors.accepted_cases(project=project, split=Split.VAL)}
    accepted_train = {c.pk for c, _ in selectors.accepted_cases(project=project, split=Split.TRAIN)}
    if current is None:
        if accepted_val:
            ids, source, pick_seed = sorted(accepted_val), Split.VAL, None
        else:
            ids, source, pick_seed = _seeded_pick(sorted(accepted_train), seed), "seeded", seed
        if not ids:
            return None
        vs = ValidationSet.objects.create(
            project=project, version=1, case_ids=ids, source=source, seed=pick_seed, added=ids
        )
        audit(project=project, actor=None, action="validation_set.frozen", target=vs, version=1, cases=len(ids))
        return vs
    usable = accepted_val | accepted_train  # a case that left the accepted train/val cases leaves the set
    kept = [i for i in current.case_ids if i in usable]
    added = sorted(accepted_val - set(current.case_ids))
    removed = sorted(set(current.case_ids) - set(kept))
    if not added and not removed:
        return current
    if not kept and not added:  # every case left the set: nothing to validate on (the round says so)
        return None
    vs = ValidationSet.objects.create(
        project=project,
        version=current.version + 1,
        case_ids=sorted(set(kept) | set(added)),
        source=current.source,
        seed=current.seed,
        added=added,
        removed=removed,
    )
    audit(
        project=project,
        actor=None,
        action="validation_set.versioned",
        target=vs,
        version=vs.version,
        added=added,
        removed=removed,
    )
    return vs


def validation_set_summary(vs: ValidationSet | None) -> dict[str, Any] | None:
    """What a version's metrics say about the set it was scored on."""
    if vs is None:
        return None
    return {"id": vs.pk, "version": vs.version, "n": len(vs.case_ids), "source": vs.source, "seed": vs.seed}
