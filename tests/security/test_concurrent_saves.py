"""Issue 13 items 2 and 3: two mask saves at the same moment never lose the loser's upload and never answer a 500.

Real concurrent HTTP requests (threads released together by a barrier): on PostgreSQL against pytest-django's live
server, on SQLite (the ``make run`` default) against a daphne subprocess on its own SQLite file.
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.security.support_reliability import WebServer, http, manage, multipart, server_env

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 40, 30


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _mask(seed: int) -> bytes:
    m = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    m[2 + seed % 10 : 12 + seed % 10, 3:20] = 255
    return _png(m)


def _together(calls: list[Callable[[], tuple]]) -> list[tuple]:
    """Run the calls in threads released at the same instant; answers in call order."""
    barrier = threading.Barrier(len(calls))
    results: list[tuple | BaseException] = [None] * len(calls)  # type: ignore[list-item]

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


def _save(base_url: str, token: str, case_id: int, seed: int, base_version: int | None) -> Callable[[], tuple]:
    fields = {} if base_version is None else {"base_version": str(base_version)}
    body, ctype = multipart(fields, [("mask", "mask.png", _mask(seed))])
    return lambda: http("POST", f"{base_url}/api/cases/{case_id}/masks/", token=token, body=body, content_type=ctype)


def _check_one_winner(answers: list[tuple], *, base_version: int | None) -> tuple[dict, dict]:
    statuses = sorted(a[0] for a in answers)
    assert statuses == [201, 409], [(a[0], str(a[1])[:300]) for a in answers]
    won = next(a[1] for a in answers if a[0] == 201)
    lost = next(a[1] for a in answers if a[0] == 409)
    assert lost["error"] == "stale_base"
    assert lost["detail"]["current_version"] == won["version"]
    assert lost["detail"]["kept_version"] not in (None, won["version"])
    return won, lost


def _rounds(base_url: str, token: str, case_ids: list[int]) -> None:
    """For each case: two first saves at once (no base), then two saves on the same base."""
    for i, case_id in enumerate(case_ids):
        won, lost = _check_one_winner(
            _together([_save(base_url, token, case_id, 2 * i, None), _save(base_url, token, case_id, 2 * i + 1, None)]),
            base_version=None,
        )
        status, history, _ = http("GET", f"{base_url}/api/cases/{case_id}/masks/", token=token)
        assert status == 200
        versions = {m["version"]: m for m in history}
        assert lost["detail"]["kept_version"] in versions, "the loser's upload must be kept"
        status, case, _ = http("GET", f"{base_url}/api/cases/{case_id}/", token=token)
        assert case["head_version"] == won["version"], "the winner is the head, the loser did not replace it"
        base = won["version"]
        _, lost2 = _check_one_winner(
            _together([_save(base_url, token, case_id, 7, base), _save(base_url, token, case_id, 8, base)]),
            base_version=base,
        )
        status, history, _ = http("GET", f"{base_url}/api/cases/{case_id}/masks/", token=token)
        assert lost2["detail"]["kept_version"] in {m["version"] for m in history}
        assert len(history) == 4


def _report(base_url: str, token: str, case_id: int, text: str, base_version: int | None) -> Callable[[], tuple]:
    body = {"text": text} if base_version is None else {"text": text, "base_version": base_version}
    return lambda: http("PUT", f"{base_url}/api/cases/{case_id}/report/", token=token, json_body=body)


def _report_rounds(base_url: str, token: str, case_ids: list[int]) -> None:
    """Report edits on *different* cases at once all succeed; two on one case with one base: one 200, one 409."""
    for i in range(0, len(case_ids) - 1, 2):
        a, b = case_ids[i], case_ids[i + 1]
        answers = _together(
            [_report(base_url, token, a, f"note a{i}", None), _report(base_url, token, b, f"b{i}", None)]
        )
        assert [x[0] for x in answers] == [200, 200], [(x[0], str(x[1])[:300]) for x in answers]
        answers = _together([_report(base_url, token, a, f"one {i}", 1), _report(base_url, token, a, f"two {i}", 1)])
        assert sorted(x[0] for x in answers) == [200, 409], [(x[0], str(x[1])[:300]) for x in answers]
        lost = next(x[1] for x in answers if x[0] == 409)
        assert lost["error"] == "stale_report" and lost["detail"]["current_version"] == 2


# --- PostgreSQL (item 3) ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_first_saves_race_on_postgresql(live_server) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from knox.models import AuthToken

    from server.studio.services.cases import case_create
    from server.studio.services.projects import project_create

    assert connection.vendor == "postgresql"
    user = get_user_model().objects.create_user("racer", password="not used")
    token = AuthToken.objects.create(user=user)[1]
    project = project_create(user=user, name="Race", template="lung-infection")
    gray = _png(np.random.default_rng(0).integers(0, 255, size=(HEIGHT, WIDTH), dtype=np.uint8))
    cases = [case_create(project=project, user=user, data=gray, filename=f"c{i}.png").pk for i in range(12)]
    _rounds(live_server.url, token, cases)
    _report_rounds(live_server.url, token, cases)


# --- SQLite, the `make run` default (item 2) ----------------------------------------------------------------------

SETUP = """
import json
import numpy as np, io
from PIL import Image
from django.contrib.auth import get_user_model
from knox.models import AuthToken
from server.studio.services.cases import case_create
from server.studio.services.projects import project_create
user = get_user_model().objects.create_user("racer", password="not used")
project = project_create(user=user, name="Race", template="lung-infection")
buf = io.BytesIO()
Image.fromarray(np.random.default_rng(0).integers(0, 255, size=(30, 40), dtype=np.uint8)).save(buf, format="PNG")
cases = [case_create(project=project, user=user, data=buf.getvalue(), filename=f"c{i}.png").pk for i in range(10)]
print("SETUP" + json.dumps({"token": AuthToken.objects.create(user=user)[1], "cases": cases}))
"""


@pytest.fixture(scope="module")
def sqlite_app(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("sqlite-app")
    env = server_env(
        DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}",
        LVIT_VAR_DIR=str(folder / "var"),
        LVIT_MEDIA_ROOT=str(folder / "media"),
    )
    manage(env, "migrate", "--noinput", "-v", "0")
    out = manage(env, "shell", "-c", SETUP)
    data = json.loads(out.split("SETUP", 1)[1])
    return {"env": env, "folder": folder, "db": folder / "db.sqlite3", **data}


def test_concurrent_saves_on_sqlite_keep_the_losers_upload(sqlite_app: dict) -> None:
    server = WebServer(sqlite_app["env"], sqlite_app["folder"] / "daphne.log").start()
    try:
        _rounds(server.url, sqlite_app["token"], sqlite_app["cases"][:6])
        _report_rounds(server.url, sqlite_app["token"], sqlite_app["cases"][6:])
    finally:
        server.stop()


def test_sqlite_lock_timeout_answers_503_json_and_stores_nothing(sqlite_app: dict) -> None:
    """A write lock held past LVIT_SQLITE_TIMEOUT: a JSON 503 with Retry-After, no row, no file; then it saves."""
    env = {**sqlite_app["env"], "LVIT_SQLITE_TIMEOUT": "1"}
    server = WebServer(env, sqlite_app["folder"] / "daphne-timeout.log").start()
    token, case_id = sqlite_app["token"], sqlite_app["cases"][-1]
    media = Path(sqlite_app["folder"] / "media")
    try:
        status, history, _ = http("GET", f"{server.url}/api/cases/{case_id}/masks/", token=token)
        assert status == 200
        files_before = sorted(p for p in media.rglob("*") if p.is_file())
        holder = sqlite3.connect(sqlite_app["db"], timeout=5, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            status, answer, headers = _save(server.url, token, case_id, 3, history[0]["version"] if history else None)()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert status == 503, (status, str(answer)[:500])
        assert answer["error"] == "database_busy" and "send the same request again" in answer["detail"]
        assert headers.get("Retry-After") == "2"
        assert sorted(p for p in media.rglob("*") if p.is_file()) == files_before, "a half-written upload is left"
        status, after, _ = http("GET", f"{server.url}/api/cases/{case_id}/masks/", token=token)
        assert len(after) == len(history)
        status, answer, _ = _save(server.url, token, case_id, 3, history[0]["version"] if history else None)()
        assert status == 201, answer  # the same request again, once the lock is free
    finally:
        server.stop()
