"""Files go through Django's storage API to an S3 endpoint, so processes on different hosts share them.

A real S3-protocol server (moto, its own process) stands in for MinIO/S3. One process writes through
``default_storage`` configured only by environment variables; another process, in another working directory with
another local state folder, reads the same bytes back. Neither leaves anything on its local disk.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

from tests.deploy.conftest import PYTHON, S3Endpoint, base_env

WRITER = """
import hashlib, json, sys
import django
django.setup()
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from storages.backends.s3 import S3Storage

payload = bytes(range(256)) * 4096  # 1 MiB, not valid UTF-8: binary-safe round trip
names = [default_storage.save("cases/7/image.png", ContentFile(payload)) for _ in range(2)]
print(json.dumps({
    "backend": type(default_storage).__name__,
    "is_s3": isinstance(default_storage, S3Storage),
    "addressing_style": default_storage.addressing_style,
    "names": names,
    "sha256": hashlib.sha256(payload).hexdigest(),
}))
"""

READER = """
import hashlib, json, sys
import django
django.setup()
from django.core.files.storage import default_storage

names = json.loads(sys.argv[1])
out = {}
for name in names:
    with default_storage.open(name, "rb") as fh:
        data = fh.read()
    out[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": default_storage.size(name),
                 "exists": default_storage.exists(name)}
dirs, files = default_storage.listdir("cases/7")
out["listing"] = sorted(files)
default_storage.delete(names[0])
out["deleted_exists"] = default_storage.exists(names[0])
print(json.dumps(out))
"""


def run_in(workdir: Path, env: dict[str, str], code: str, *args: str) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [PYTHON, "-c", code, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_one_process_writes_and_another_reads_through_s3(s3_endpoint: S3Endpoint, tmp_path: Path) -> None:
    bucket = f"lvit-{uuid.uuid4().hex[:12]}"
    s3_endpoint.client().create_bucket(Bucket=bucket)

    writer_var, reader_var = tmp_path / "host-a" / "var", tmp_path / "host-b" / "var"
    writer_env = {**base_env(writer_var), **s3_endpoint.env(bucket)}
    reader_env = {**base_env(reader_var), **s3_endpoint.env(bucket)}

    written = run_in(tmp_path / "host-a" / "cwd", writer_env, WRITER)
    assert written["is_s3"], written["backend"]
    assert written["addressing_style"] == "path"  # what an explicit endpoint (MinIO) needs
    first, second = written["names"]
    assert first == "cases/7/image.png"
    assert second != first and second.startswith("cases/7/image"), "file_overwrite=False: never overwrite"

    read = run_in(tmp_path / "host-b" / "cwd", reader_env, READER, json.dumps(written["names"]))
    for name in written["names"]:
        assert read[name] == {"sha256": written["sha256"], "size": 1024 * 1024, "exists": True}
    assert read["listing"] == sorted(Path(n).name for n in written["names"])
    assert read["deleted_exists"] is False

    # The objects are really in the bucket (seen with a plain S3 client, not through Django) ...
    keys = sorted(o["Key"] for o in s3_endpoint.client().list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == [second]
    body = s3_endpoint.client().get_object(Bucket=bucket, Key=second)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == written["sha256"]
    # ... and not on either process's local disk.
    for var in (writer_var, reader_var):
        assert not (var / "media").exists() or not any((var / "media").rglob("*")), var


def test_s3_settings_fail_loudly_without_a_bucket(tmp_path: Path) -> None:
    env = {**base_env(tmp_path / "var"), "LVIT_STORAGE": "s3"}
    result = subprocess.run(
        [PYTHON, "manage.py", "check"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "LVIT_S3_BUCKET" in result.stderr


def test_s3_addressing_style_is_validated(tmp_path: Path) -> None:
    env = {
        **base_env(tmp_path / "var"),
        "LVIT_STORAGE": "s3",
        "LVIT_S3_BUCKET": "b",
        "LVIT_S3_ADDRESSING_STYLE": "sideways",
    }
    result = subprocess.run(
        [PYTHON, "manage.py", "check"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "LVIT_S3_ADDRESSING_STYLE" in result.stderr
