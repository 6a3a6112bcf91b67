"""The production environment template passes Django's deployment checklist (``manage.py check --deploy``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import PYTHON, REPO, production_env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_env_example_passes_check_deploy_without_warnings(tmp_path: Path) -> None:
    result = check_deploy(production_env(tmp_path / "var"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNINGS" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"SECURE_SSL_REDIRECT": "0"}, "security.W008"),
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"SESSION_COOKIE_SECURE": "0"}, "security.W012"),
        ({"DEBUG": "1"}, "security.W018"),
    ],
)
def test_check_deploy_catches_a_weakened_setting(tmp_path: Path, override: dict[str, str], expected: str) -> None:
    """The test above has teeth: each weakened value is reported and fails the run."""
    result = check_deploy({**production_env(tmp_path / "var"), **override})
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


def test_short_secret_key_is_refused_at_start_up(tmp_path: Path) -> None:
    result = check_deploy({**production_env(tmp_path / "var"), "SECRET_KEY": "too-short"})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
