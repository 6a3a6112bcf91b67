"""``python -m ml``: help for every command, count, and a tiny train -> eval -> predict round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.cli import format_table, main


@pytest.mark.parametrize("command", ["train", "eval", "predict", "count"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_count_prints_the_parameter_table(capsys: pytest.CaptureFixture[str]) -> None:
    main(["count", "--variant", "T", "--text-dim", "768"])
    out = capsys.readouterr().out
    assert "LViT-T" in out and "29,908,033" in out and "29.72M" in out  # paper convention: 29.7M
    main(["count", "--variant", "T", "--no-text"])
    assert "LViT-TW" in capsys.readouterr().out


def test_train_eval_predict_round_trip(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(shared_data / "covid_cxr")
    run = tmp_path / "run"
    main(
        [
            "train",
            "--data",
            data,
            "--in-channels",
            "1",
            "--img-size",
            "32",
            "--epochs",
            "1",
            "--limit",
            "2",
            "--out",
            str(run),
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert "completed" in out and (run / "best.pt").is_file() and (run / "train_config.json").is_file()
    from ml.predict import load_checkpoint
    from ml.text import text_length_for
    from ml.train import folder_samples

    labeled, _, val = folder_samples(data)
    longest = text_length_for(s.sentence for s in [*labeled[:2], *val[:2]])
    assert longest > 10 and load_checkpoint(run / "best.pt")["config"]["text_len"] == longest  # --text-len auto
    main(
        [
            "eval",
            "--checkpoint",
            str(run / "best.pt"),
            "--data",
            data,
            "--split",
            "Val",
            "--quiet",
            "--json",
            str(tmp_path / "m.json"),
        ]
    )
    out = capsys.readouterr().out
    assert "n_empty_both" in out and "| LViT-T | Val" in out and (tmp_path / "m.json").is_file()
    image = next((shared_data / "covid_cxr" / "Val_Folder" / "img").iterdir())
    main(
        [
            "predict",
            "--checkpoint",
            str(run / "best.pt"),
            "--image",
            str(image),
            "--text",
            "No pulmonary infection.",
            "--out",
            str(tmp_path / "pred"),
            "--quiet",
        ]
    )
    assert (tmp_path / "pred" / f"{image.stem}_mask.png").is_file()
    assert "uncertainty" in capsys.readouterr().out


def test_format_table() -> None:
    table = format_table([{"a": 1234, "b": 0.5, "c": "x"}])
    assert table.splitlines()[0] == "| a     | b      | c |"
    assert "1,234" in table and "0.5000" in table
    assert format_table([]) == "(no rows)"


def test_train_with_forked_loader_workers_in_a_fresh_process(shared_data: Path, tmp_path: Path) -> None:
    """DataLoader workers are forked per epoch; run where forking is safe: a new, single-threaded interpreter.

    (Forking from the long-lived pytest process, which holds threads from earlier tests, can deadlock.)
    """
    import subprocess
    import sys

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "ml", "train", "--data", str(shared_data / "covid_cxr"), "--in-channels", "1"]
    cmd += ["--img-size", "32", "--epochs", "2", "--limit", "2", "--workers", "1", "--out", str(run), "--quiet"]
    cmd += ["--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "completed" in proc.stdout and (run / "best.pt").is_file()


def test_ml_never_imports_django() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    code = (
        "import sys, ml, ml.cli, ml.data, ml.epi, ml.losses, ml.metrics, ml.text, ml.train; "
        "assert 'django' not in sys.modules, 'ml imported django'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_ml_package_is_lazy() -> None:
    """``import ml.<torch-free module>`` loads no torch (PEP 562 ``ml.__getattr__``); ``ml.<name>`` still works."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    code = (
        "import sys, ml, ml.tables, ml.laterality, ml.config, ml.text; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert ml.LViTConfig is ml.config.LViTConfig and 'LViT' in dir(ml); "
        "import ml.models; assert ml.LViT is ml.models.LViT; "
        "assert 'torch' in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
