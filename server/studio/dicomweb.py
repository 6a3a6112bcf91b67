"""The connected PACS over DICOMweb (``dicomweb-client``): QIDO-RS search, WADO-RS retrieve, STOW-RS store.

Transport only: no models, no storage. Every failure of the PACS becomes a :class:`PacsError` whose message says what
to check (unreachable, credentials refused, not found, refused to store), so an API answers a clear 502 instead of
leaking a traceback. Connection settings come from ``settings.PACS`` (:class:`server.config.PacsConfig`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from django.conf import settings
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from rest_framework import status

from server.config import PacsConfig
from server.core.errors import NotFound, ServiceError
from server.studio import dicom_guard

T = TypeVar("T")

# SOP classes that carry pixels but are not images to annotate (derived objects this server or others write back).
NOT_FOR_ANNOTATION = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation",
    "1.2.840.10008.5.1.4.1.1.30": "Parametric Map",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
}
STUDY_FIELDS = [
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "PatientName",
]
INSTANCE_FIELDS = ["SOPClassUID", "InstanceNumber", "Rows", "Columns", "NumberOfFrames", "SeriesNumber", "Modality"]
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DATE = re.compile(r"^\d{8}$")


class PacsError(ServiceError):
    status_code = status.HTTP_502_BAD_GATEWAY
    code = "pacs_error"


class PacsNotConfigured(ServiceError):
    """No PACS is connected: a state of this server the request cannot change (409), not a failure (5xx)."""

    status_code = status.HTTP_409_CONFLICT
    code = "pacs_not_configured"


@dataclass(frozen=True)
class StudyHit:
    study_uid: str
    patient_id: str
    patient_name: str
    accession: str
    study_date: str
    description: str
    modalities: list[str]
    series: int | None
    instances: int | None


@dataclass(frozen=True)
class SeriesHit:
    series_uid: str
    modality: str
    number: int | None
    description: str
    instances: int | None


@dataclass(frozen=True)
class InstanceHit:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    number: int | None
    rows: int | None
    columns: int | None
    frames: int
    modality: str = ""

    @property
    def unusable_reason(self) -> str:
        """Why this instance cannot become a case, or "" when it can."""
        if self.sop_class_uid in NOT_FOR_ANNOTATION:
            return f"a {NOT_FOR_ANNOTATION[self.sop_class_uid]} object, not an image to annotate"
        if not self.rows or not self.columns:
            name = pydicom.uid.UID(self.sop_class_uid).name if self.sop_class_uid else "an object"
            return f"{name} holds no image pixels"
        return ""


@dataclass(frozen=True)
class StudyQuery:
    """QIDO-RS study search filters; all optional, combined with AND."""

    patient_id: str = ""
    accession: str = ""
    date_from: date | None = None
    date_to: date | None = None
    modality: str = ""
    limit: int = 50
    offset: int = 0

    def search_filters(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.patient_id:
            out["PatientID"] = self.patient_id
        if self.accession:
            out["AccessionNumber"] = self.accession
        if self.modality:
            out["ModalitiesInStudy"] = self.modality.upper()
        if self.date_from or self.date_to:
            lo = self.date_from.strftime("%Y%m%d") if self.date_from else ""
            hi = self.date_to.strftime("%Y%m%d") if self.date_to else ""
            out["StudyDate"] = lo if lo and lo == hi else f"{lo}-{hi}"
        return out


def check_uid(value: str, what: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > 64 or not _UID.match(value):
        raise ServiceError({what: f"{value!r} is not a DICOM UID (digits and dots, at most 64 characters)"})
    return value


def pacs_settings() -> PacsConfig:
    config: PacsConfig = getattr(settings, "PACS", PacsConfig())
    if not config.enabled:
        raise PacsNotConfigured("no PACS is connected: set PACS_URL (and its credentials) to import from a PACS")
    return config


def pacs_client(config: PacsConfig | None = None) -> DICOMwebClient:
    config = config or pacs_settings()
    session = requests.Session()
    if config.username:
        session.auth = (config.username, config.password)
    if config.token:
        session.headers["Authorization"] = f"Bearer {config.token}"
    if config.ca_bundle:
        session.verify = config.ca_bundle
    client = DICOMwebClient(url=config.url, session=session, timeout=config.timeout)
    client.set_http_retry_params(retry=False)  # the user is waiting; a failure is reported, not retried for a minute
    return client


def _call(config: PacsConfig, what: str, fn: Callable[[], T]) -> T:
    """Run one DICOMweb request, turning transport and HTTP failures into :class:`PacsError` messages."""
    try:
        return fn()
    except requests.exceptions.SSLError as exc:
        raise PacsError(
            f"the TLS certificate of the PACS at {config.url} is not trusted ({exc.__class__.__name__}); "
            "set PACS_CA_BUNDLE to the hospital's CA bundle",
            code="pacs_tls_error",
        ) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        kind = "did not answer in time" if isinstance(exc, requests.exceptions.Timeout) else "cannot be reached"
        raise PacsError(
            f"the PACS at {config.url} {kind} while {what}; check PACS_URL and that the PACS is running and "
            "allows connections from this server",
            code="pacs_unreachable",
        ) from None
    except requests.exceptions.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        if code in (401, 403):
            raise PacsError(
                f"the PACS refused the credentials (HTTP {code}) while {what}; check PACS_USERNAME/PACS_PASSWORD "
                "or PACS_TOKEN, and that this account may use DICOMweb",
                code="pacs_auth_failed",
            ) from None
        if code == 404:
            raise NotFound(f"the PACS has no such object ({what})", code="pacs_not_found") from None
        body = (exc.response.text or "")[:300] if exc.response is not None else ""
        raise PacsError(f"the PACS answered HTTP {code} while {what}: {body}".strip(), code="pacs_http_error") from None
    except (ValueError, KeyError, TypeError, pydicom.errors.InvalidDicomError) as exc:
        raise PacsError(f"the PACS sent an answer that is not valid DICOMweb while {what}: {exc}") from None


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _datasets(results: Iterable[dict[str, Any]]) -> list[Dataset]:
    return [Dataset.from_json(r) for r in results]


def study_search(*, query: StudyQuery, config: PacsConfig | None = None) -> list[StudyHit]:
    """Studies matching ``query`` (QIDO-RS ``/studies``), newest first."""
    config = config or pacs_settings()
    client = pacs_client(config)
    results = _call(
        config,
        "searching for studies",
        lambda: client.search_for_studies(
            fields=STUDY_FIELDS,
            search_filters=query.search_filters(),
            limit=query.limit,
            offset=query.offset,
            get_remaining=False,
        ),
    )
    hits = []
    for ds in _datasets(results):
        value = ds.get("ModalitiesInStudy")
        modalities = [str(m) for m in value] if isinstance(value, MultiValue) else ([str(value)] if value else [])
        hits.append(
            StudyHit(
                study_uid=_text(ds, "StudyInstanceUID"),
                patient_id=_text(ds, "PatientID"),
                patient_name=_text(ds, "PatientName"),
                accession=_text(ds, "AccessionNumber"),
                study_date=_text(ds, "StudyDate"),
                description=_text(ds, "StudyDescription"),
                modalities=[m for m in modalities if m],
                series=_int(ds, "NumberOfStudyRelatedSeries"),
                instances=_int(ds, "NumberOfStudyRelatedInstances"),
            )
        )
    hits.sort(key=lambda h: (h.study_date, h.study_uid), reverse=True)
    return hits


def series_search(*, study_uid: str, config: PacsConfig | None = None) -> list[SeriesHit]:
    """The series of one study (QIDO-RS ``/studies/{uid}/series``), by series number."""
    config = config or pacs_settings()
    client = pacs_client(config)
    study_uid = check_uid(study_uid, "study_uid")
    results = _call(
        config,
        f"listing the series of study {study_uid}",
        lambda: client.search_for_series(
            study_instance_uid=study_uid,
            fields=["SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesNumber", "Modality"],
        ),
    )
    hits = [
        SeriesHit(
            series_uid=_text(ds, "SeriesInstanceUID"),
            modality=_text(ds, "Modality"),
            number=_int(ds, "SeriesNumber"),
            description=_text(ds, "SeriesDescription"),
            instances=_int(ds, "NumberOfSeriesRelatedInstances"),
        )
        for ds in _datasets(results)
    ]
    hits.sort(key=lambda h: (h.number is None, h.number or 0, h.series_uid))
    return hits


def instance_search(
    *, study_uid: str, series_uid: str = "", config: PacsConfig | None = None, limit: int | None = None
) -> list[InstanceHit]:
    """The instances of a study or of one of its series (QIDO-RS), by series and instance number."""
    config = config or pacs_settings()
    client = pacs_client(config)
    study_uid = check_uid(study_uid, "study_uid")
    series = check_uid(series_uid, "series_uid") if series_uid else None
    results = _call(
        config,
        f"listing the instances of study {study_uid}",
        lambda: client.search_for_instances(
            study_instance_uid=study_uid,
            series_instance_uid=series,
            fields=INSTANCE_FIELDS,
            limit=limit,
            get_remaining=limit is None,
        ),
    )
    hits = [
        InstanceHit(
            study_uid=_text(ds, "StudyInstanceUID") or study_uid,
            series_uid=_text(ds, "SeriesInstanceUID"),
            sop_uid=_text(ds, "SOPInstanceUID"),
            sop_class_uid=_text(ds, "SOPClassUID"),
            number=_int(ds, "InstanceNumber"),
            rows=_int(ds, "Rows"),
            columns=_int(ds, "Columns"),
            frames=_int(ds, "NumberOfFrames") or 1,
            modality=_text(ds, "Modality"),
        )
        for ds in _datasets(results)
    ]
    hits.sort(key=lambda h: (h.series_uid, h.number is None, h.number or 0, h.sop_uid))
    return hits


def _retrieve_raw(client: DICOMwebClient, url: str) -> bytes:
    """The instance's bytes exactly as the PACS sent them: the same request as ``client.retrieve_instance`` (any
    transfer syntax), without its ``pydicom.dcmread``, so :func:`dicom_guard.dicom_check` sees them first."""
    response = client._http_get(
        url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    )
    if response.headers.get("Content-Type", "").startswith("application/dicom"):
        return bytes(response.content)  # a single part sent without multipart encapsulation
    parts = list(client._decode_multipart_message(response, stream=False))
    if len(parts) != 1:
        raise ValueError(f"expected one instance, the PACS sent {len(parts)} parts")
    return bytes(parts[0])


def instance_retrieve(*, study_uid: str, series_uid: str, sop_uid: str, config: PacsConfig | None = None) -> bytes:
    """One instance as a DICOM Part 10 file (WADO-RS), in the transfer syntax the PACS stores (no transcoding, so a
    lossless original stays lossless; the server's decoders read the compressed syntaxes). The raw bytes pass the
    bounded pre-scan (:mod:`dicom_guard`; 400 ``dicom_too_complex``) before pydicom parses them."""
    from dicomweb_client.web import _Transaction

    config = config or pacs_settings()
    client = pacs_client(config)
    url = client._get_instances_url(_Transaction.RETRIEVE, study_uid, series_uid, sop_uid)
    raw = _call(config, f"retrieving instance {sop_uid}", lambda: _retrieve_raw(client, url))
    dicom_guard.dicom_check(raw)
    buf = io.BytesIO()
    try:
        ds = pydicom.dcmread(io.BytesIO(raw))
        ds.save_as(buf, enforce_file_format=True)
    except (ValueError, AttributeError, TypeError, EOFError, KeyError, pydicom.errors.InvalidDicomError) as exc:
        raise PacsError(f"instance {sop_uid} from the PACS cannot be written as a DICOM file: {exc}") from None
    return buf.getvalue()


def instance_metadata(*, study_uid: str, series_uid: str, sop_uid: str, config: PacsConfig | None = None) -> Dataset:
    """One instance's attributes without its pixels (WADO-RS ``/metadata``), as a pydicom dataset."""
    config = config or pacs_settings()
    client = pacs_client(config)
    meta = _call(
        config,
        f"reading the metadata of instance {sop_uid}",
        lambda: client.retrieve_instance_metadata(
            study_instance_uid=study_uid, series_instance_uid=series_uid, sop_instance_uid=sop_uid
        ),
    )
    return Dataset.from_json(meta, bulk_data_uri_handler=lambda *_: b"")


def instances_store(*, datasets: list[Dataset], config: PacsConfig | None = None) -> list[str]:
    """Store datasets with STOW-RS; the SOP Instance UIDs the PACS accepted. A refusal of any raises."""
    config = config or pacs_settings()
    client = pacs_client(config)
    if not datasets:
        return []
    study_uid = str(datasets[0].StudyInstanceUID)
    answer = _call(
        config,
        f"storing {len(datasets)} object(s) in study {study_uid}",
        lambda: client.store_instances(datasets=datasets, study_instance_uid=study_uid),
    )
    failed = answer.get("FailedSOPSequence") if answer is not None else None
    if failed:
        reasons = ", ".join(
            f"{item.get('ReferencedSOPInstanceUID', '?')} (failure reason {item.get('FailureReason', '?')})"
            for item in failed
        )
        raise PacsError(f"the PACS refused to store: {reasons}", code="pacs_store_refused")
    stored = answer.get("ReferencedSOPSequence") if answer is not None else None
    uids = [str(item.ReferencedSOPInstanceUID) for item in stored] if stored else []
    if len(uids) != len(datasets):
        raise PacsError(
            f"the PACS confirmed {len(uids)} of {len(datasets)} stored objects; check the PACS logs",
            code="pacs_store_refused",
        )
    return uids


def check_date(value: str, what: str) -> date | None:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` to a date; empty is None."""
    value = (value or "").strip().replace("-", "")
    if not value:
        return None
    if not _DATE.match(value):
        raise ServiceError({what: f"{value!r} is not a date; use YYYY-MM-DD"})
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise ServiceError({what: f"{value!r} is not a date; use YYYY-MM-DD"}) from None
