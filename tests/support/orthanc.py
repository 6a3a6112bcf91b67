"""A real PACS for the tests: Orthanc with its DICOMweb plugin, started on a free local port.

Each start has its own configuration, storage folder and credentials (never the system service, never the system
configuration), listens only on 127.0.0.1, has the DICOM (DIMSE) server switched off and HTTP basic authentication on.
The Debian packages ``orthanc`` and ``orthanc-dicomweb`` provide the binary and the plugin.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ORTHANC_BINARY = os.environ.get("LVIT_ORTHANC", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dicomweb_plugin() -> Path | None:
    for folder in DICOMWEB_PLUGIN_DIRS:
        for candidate in sorted(Path(folder).glob("libOrthancDicomWeb.so*")):
            return candidate
    return None


def orthanc_missing() -> str | None:
    """Why Orthanc cannot start here, or None when the binary and the DICOMweb plugin are installed."""
    if not shutil.which(ORTHANC_BINARY) and not Path(ORTHANC_BINARY).exists():
        return f"{ORTHANC_BINARY} not found: apt-get install orthanc orthanc-dicomweb"
    if dicomweb_plugin() is None:
        return "the Orthanc DICOMweb plugin is not installed: apt-get install orthanc-dicomweb"
    return None


class OrthancProcess:
    """``Orthanc <config>`` with the DICOMweb plugin; ``url`` is the server, ``dicomweb_url`` its DICOMweb root."""

    def __init__(self, folder: Path, *, username: str = "lvit", password: str = "pacs-test-secret") -> None:
        self.folder = folder
        self.username = username
        self.password = password
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self.log_path = folder / "orthanc.log"
        self.proc: subprocess.Popen | None = None

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)

    def config(self) -> dict:
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        return {
            "Name": "LViT-test-PACS",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.port,
            "HttpServerEnabled": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.username: self.password},
            "DicomServerEnabled": False,
            "DicomPort": _free_port(),
            "Plugins": [str(dicomweb_plugin())],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": f"127.0.0.1:{self.port}"},
            "HttpThreadsCount": 8,
            "ConcurrentJobs": 1,
            "SaveJobs": False,
            "StorageCompression": False,
            "OverwriteInstances": True,
            "UnknownSopClassAccepted": True,
            "ExecuteLuaEnabled": False,
            "MallocArenaMax": 1,
        }

    def start(self, timeout: float = 60.0) -> None:
        missing = orthanc_missing()
        if missing:
            raise RuntimeError(missing)
        self.folder.mkdir(parents=True, exist_ok=True)
        config_path = self.folder / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [ORTHANC_BINARY, "--no-jobs", str(config_path)],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = requests.get(f"{self.url}/plugins", auth=self.auth, timeout=2)
                if r.ok:
                    if "dicom-web" not in r.json():
                        raise RuntimeError(f"Orthanc started without its DICOMweb plugin:\n{self.log()}")
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    # --- REST helpers for loading and inspecting the test PACS (Orthanc's own API, not DICOMweb) -------------------

    def upload(self, data: bytes) -> dict:
        """Store one DICOM Part 10 file; Orthanc's answer (``ID``, ``ParentStudy``, ``Status``)."""
        r = requests.post(f"{self.url}/instances", data=data, auth=self.auth, timeout=30)
        r.raise_for_status()
        return r.json()

    def instances(self) -> list[str]:
        r = requests.get(f"{self.url}/instances", auth=self.auth, timeout=10)
        r.raise_for_status()
        return r.json()

    def delete_study(self, study_uid: str) -> None:
        r = requests.post(f"{self.url}/tools/lookup", data=study_uid, auth=self.auth, timeout=10)
        r.raise_for_status()
        for hit in r.json():
            if hit["Type"] == "Study":
                requests.delete(f"{self.url}/studies/{hit['ID']}", auth=self.auth, timeout=10).raise_for_status()

    def delete_series(self, series_uid: str) -> None:
        r = requests.post(f"{self.url}/tools/lookup", data=series_uid, auth=self.auth, timeout=10)
        r.raise_for_status()
        for hit in r.json():
            if hit["Type"] == "Series":
                requests.delete(f"{self.url}/series/{hit['ID']}", auth=self.auth, timeout=10).raise_for_status()
