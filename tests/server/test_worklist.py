"""Worklist: strategies, resuming one's own case, expiry, and no double assignment under concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from server.studio.models import Case, CaseState, MaskKind
from server.studio.services.cases import case_create, worklist_next
from server.studio.services.masks import mask_create_proposal
from server.studio.services.projects import member_set
from tests.server.conftest import gray_image


def make_cases(people, n=5):
    cases = []
    for i in range(n):
        c = case_create(project=people.project, user=people.owner, data=gray_image(seed=i), filename=f"w{i}.png")
        Case.objects.filter(pk=c.pk).update(al_score=i / 10, inconsistency=(n - i) / 10)
        cases.append(c)
    return cases


def test_uncertainty_orders_by_al_score_and_resumes(people, collab_client, owner_client):
    cases = make_cases(people)
    url = f"/api/projects/{people.project.pk}/worklist/next/"
    first = collab_client.post(url + "?strategy=uncertainty").json()
    assert first["id"] == cases[-1].pk and first["assignee"] == "collab"
    assert collab_client.post(url + "?strategy=uncertainty").json()["id"] == first["id"]  # resumes
    assert owner_client.post(url + "?strategy=uncertainty").json()["id"] == cases[-2].pk  # never the same
    assert owner_client.post(url, {}, format="json").status_code == 200
    r = owner_client.post(url + "?strategy=psychic")
    assert r.status_code == 400 and "strategy" in r.json()["detail"]


def test_expired_assignments_are_reclaimed(people):
    cases = make_cases(people, 1)
    worklist_next(project=people.project, user=people.owner)
    assert worklist_next(project=people.project, user=people.collaborator) is None
    Case.objects.filter(pk=cases[0].pk).update(assigned_at=timezone.now() - timedelta(hours=2))
    assert worklist_next(project=people.project, user=people.collaborator).pk == cases[0].pk


def test_inconsistency_strategy_only_considers_proposals(people):
    cases = make_cases(people, 3)
    assert worklist_next(project=people.project, user=people.owner, strategy="inconsistency") is None
    mask_create_proposal(case=cases[1], array=__import__("numpy").ones((48, 64), bool), kind=MaskKind.PROPOSAL)
    got = worklist_next(project=people.project, user=people.owner, strategy="inconsistency")
    assert got.pk == cases[1].pk


def test_random_and_labeled_cases_are_skipped(people):
    cases = make_cases(people, 3)
    Case.objects.filter(pk__in=[cases[0].pk, cases[1].pk]).update(state=CaseState.LABELED)
    assert worklist_next(project=people.project, user=people.owner, strategy="random").pk == cases[2].pk


def test_release(people, collab_client):
    make_cases(people, 1)
    case = worklist_next(project=people.project, user=people.collaborator)
    r = collab_client.post(f"/api/cases/{case.pk}/release/")
    assert r.status_code == 200 and r.json()["assignee"] is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_share_a_case(people):
    make_cases(people, 6)
    from django.contrib.auth import get_user_model

    users = [get_user_model().objects.create_user(f"u{i}") for i in range(6)]
    for u in users:
        member_set(project=people.project, user=people.owner, member=u.username, role="annotator")
    barrier = threading.Barrier(len(users))
    got: dict[str, int | None] = {}

    def claim(user):
        try:
            barrier.wait()
            case = worklist_next(project=people.project, user=user)
            got[user.username] = case.pk if case else None
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [v for v in got.values() if v is not None]
    assert len(claimed) == 6 and len(set(claimed)) == 6
    assert Case.objects.filter(assignee__isnull=False).count() == 6
