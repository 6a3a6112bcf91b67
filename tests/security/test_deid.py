"""DICOM de-identification (issue 13 item 6): the PS3.15 basic profile as an allow-list, on a crafted file carrying
the attributes of the profile's table (PS3.15 Table E.1-1) and on every DICOM test file pydicom ships."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import DATA_ROOT
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from server.studio import deid
from server.studio.imaging import ImageError, decode_upload, is_dicom

# Attributes of PS3.15 Table E.1-1 (Application Level Confidentiality Profile Attributes), by keyword. Every one
# must be gone from the stored original, except the instance UIDs, which are replaced.
_PROFILE_TABLE_TEXT = """
AccessionNumber AcquisitionComments AcquisitionContextSequence AcquisitionDate AcquisitionDateTime
AcquisitionDeviceProcessingDescription AcquisitionProtocolDescription AcquisitionTime ActualHumanPerformersSequence
AdditionalPatientHistory AdmissionID AdmittingDate AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription
AdmittingTime AffectedSOPInstanceUID Allergies Arbitrary AuthorObserverSequence BranchOfService
CassetteID CommentsOnThePerformedProcedureStep ConcatenationUID ConfidentialityConstraintOnPatientDataDescription
ContentCreatorName ContentCreatorIdentificationCodeSequence ContentDate ContentSequence ContentTime
ContextGroupExtensionCreatorUID ContrastBolusAgent ContributionDescription CountryOfResidence CreatorVersionUID
CurrentPatientLocation CurveDate CurveTime CustodialOrganizationSequence DataSetTrailingPadding DerivationDescription
DetectorID DeviceSerialNumber DeviceUID DigitalSignatureUID DigitalSignaturesSequence DischargeDiagnosisDescription
DistributionAddress DistributionName DoseReferenceUID EthnicGroup FailedSOPInstanceUIDList FiducialUID
FillerOrderNumberImagingServiceRequest FrameComments FrameOfReferenceUID GantryID GeneratorID
GraphicAnnotationSequence HumanPerformerName HumanPerformerOrganization IconImageSequence IdentifyingComments
ImageComments ImagePresentationComments ImagingServiceRequestComments Impressions InstanceCreationDate
InstanceCreationTime InstanceCreatorUID InstitutionAddress InstitutionCodeSequence InstitutionName
InstitutionalDepartmentName InsurancePlanIdentification IntendedRecipientsOfResultsIdentificationSequence
InterpretationApproverSequence InterpretationAuthor InterpretationDiagnosisDescription InterpretationIDIssuer
InterpretationRecorder InterpretationText InterpretationTranscriber IrradiationEventUID IssuerOfAdmissionID
IssuerOfPatientID IssuerOfServiceEpisodeID LargePaletteColorLookupTableUID LastMenstrualDate MAC
MediaStorageSOPInstanceUID MedicalAlerts MedicalRecordLocator MilitaryRank ModifiedAttributesSequence
ModifiedImageDescription ModifyingDeviceID NamesOfIntendedRecipientsOfResults Occupation
OperatorIdentificationSequence OperatorsName OriginalAttributesSequence OrderCallbackPhoneNumber
OrderEnteredBy OrderEntererLocation OtherPatientIDs OtherPatientIDsSequence OtherPatientNames
OverlayComments OverlayData OverlayDate OverlayTime ParticipantSequence PatientAddress PatientAge
PatientBirthDate PatientBirthName PatientBirthTime PatientComments PatientID PatientInstitutionResidence
PatientInsurancePlanCodeSequence PatientMotherBirthName PatientName PatientPrimaryLanguageCodeSequence
PatientReligiousPreference PatientSex PatientSexNeutered PatientSize PatientState PatientTelephoneNumbers
PatientTransportArrangements PatientWeight PerformedLocation PerformedProcedureStepDescription
PerformedProcedureStepEndDate PerformedProcedureStepEndTime PerformedProcedureStepID
PerformedProcedureStepStartDate PerformedProcedureStepStartTime PerformedStationAETitle
PerformedStationGeographicLocationCodeSequence PerformedStationName PerformedStationNameCodeSequence
PerformingPhysicianIdentificationSequence PerformingPhysicianName PersonAddress PersonIdentificationCodeSequence
PersonName PersonTelephoneNumbers PhysicianApprovingInterpretation PhysiciansOfRecord
PhysiciansOfRecordIdentificationSequence PhysiciansReadingStudyIdentificationSequence PlacerOrderNumberImagingServiceRequest
PlateID PreMedication PregnancyStatus ProtocolName ReasonForTheImagingServiceRequest ReasonForStudy
ReferencedDigitalSignatureSequence ReferencedFrameOfReferenceUID ReferencedGeneralPurposeScheduledProcedureStepTransactionUID
ReferencedImageSequence ReferencedPatientAliasSequence ReferencedPatientSequence ReferencedPerformedProcedureStepSequence
ReferencedSOPInstanceMACSequence ReferencedSOPInstanceUID ReferencedSOPInstanceUIDInFile ReferencedStudySequence
ReferringPhysicianAddress ReferringPhysicianIdentificationSequence ReferringPhysicianName
ReferringPhysicianTelephoneNumbers RegionOfResidence RelatedFrameOfReferenceUID RequestAttributesSequence
RequestedContrastAgent RequestedProcedureComments RequestedProcedureDescription RequestedProcedureID
RequestedProcedureLocation RequestedSOPInstanceUID RequestingPhysician RequestingService
RequestingServiceCodeSequence ResponsibleOrganization ResponsiblePerson ResponsiblePersonRole ResultsComments
ResultsDistributionListSequence ResultsIDIssuer ReviewerName ScheduledHumanPerformersSequence
ScheduledPatientInstitutionResidence ScheduledPerformingPhysicianIdentificationSequence
ScheduledPerformingPhysicianName ScheduledProcedureStepDescription ScheduledProcedureStepEndDate
ScheduledProcedureStepEndTime ScheduledProcedureStepLocation ScheduledProcedureStepStartDate
ScheduledProcedureStepStartTime ScheduledStationAETitle ScheduledStationGeographicLocationCodeSequence
ScheduledStationName ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
SeriesDate SeriesDescription SeriesInstanceUID SeriesTime ServiceEpisodeDescription ServiceEpisodeID
SmokingStatus SOPInstanceUID SourceImageSequence SpecialNeeds StationName StorageMediaFileSetUID StudyComments
StudyDate StudyDescription StudyID StudyIDIssuer StudyInstanceUID StudyTime SynchronizationFrameOfReferenceUID
TemplateExtensionCreatorUID TemplateExtensionOrganizationUID TextComments TextString TimezoneOffsetFromUTC
TopicAuthor TopicKeywords TopicSubject TopicTitle TransactionUID UID VerifyingObserverIdentificationCodeSequence
VerifyingObserverName VerifyingObserverSequence VerifyingOrganization VisitComments
"""
PROFILE_TABLE = _PROFILE_TABLE_TEXT.split()

SECRET = "SECRET"  # every text value of the crafted file starts with it


def _value(keyword: str, vr: str, n: int):
    """A value of ``vr`` for the crafted file, text ones carrying a unique marker."""
    if vr == "SQ":
        item = Dataset()
        item.PersonName = f"{SECRET}^Nested{n}"
        item.ReferencedSOPInstanceUID = generate_uid()
        item.TextValue = f"{SECRET} nested text {n}"
        return Sequence([item])
    if vr == "PN":
        return f"{SECRET}^Person{n}"
    if vr == "DA":
        return "19700101"
    if vr == "TM":
        return "101010"
    if vr == "DT":
        return "19700101101010"
    if vr == "UI":
        return generate_uid()
    if vr in {"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"}:
        return 7
    if vr in {"DS", "IS"}:
        return "7"
    if vr in {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}:
        return b"SECRET" + bytes(2)
    if vr == "AS":
        return "042Y"
    if vr == "CS":
        return "SECRET"
    if vr == "AT":
        return 0x00100010
    if vr == "AE":
        return f"{SECRET}AE{n}"[:16]
    if vr == "SH":
        return f"{SECRET}{n}"[:16]
    return f"{SECRET} text {n}"


def crafted_dicom() -> tuple[bytes, Dataset]:
    """A small CT carrying every attribute of the profile's table that pydicom knows, plus private tags, a person
    name inside a kept sequence and a non-zero preamble."""
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "SECRETHOSPAE"
    meta.PrivateInformationCreatorUID = generate_uid()
    meta.PrivateInformation = b"SECRET-private-meta"
    ds.file_meta = meta
    for n, keyword in enumerate(PROFILE_TABLE):
        tag = tag_for_keyword(keyword)
        if tag is None or tag >> 16 in (0x0000, 0x0002) or keyword == "DataSetTrailingPadding":
            continue  # command and file meta groups cannot be in a dataset; the meta is checked on its own
        vr = dictionary_VR(tag).split(" or ")[0]
        setattr(ds, keyword, _value(keyword, vr, n))
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = 16, 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.WindowCenter, ds.WindowWidth = "-1024", "1", "40", "400"
    ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = (np.arange(256, dtype=np.uint16) * 8).tobytes()
    # identifying content inside a sequence the profile keeps
    group = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.5]
    group.PixelMeasuresSequence = Sequence([measures])
    group.ReferringPhysicianName = f"{SECRET}^InsideKeptSequence"
    group.FrameAcquisitionDateTime = "19700101101010"
    ds.SharedFunctionalGroupsSequence = Sequence([group])
    ds.add_new(0x00091010, "LO", f"{SECRET} private text")
    ds.add_new(0x00091000, "LO", "SECRET CREATOR")
    ds.add_new(0x7FE10010, "LO", f"{SECRET} another private")
    ds.preamble = b"SECRETPREAMBLE".ljust(128, b"X")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), ds


def _walk(ds: Dataset):
    for elem in ds:
        yield elem
        if elem.VR == "SQ" and elem.keyword != "DeidentificationMethodCodeSequence":  # the code written, checked below
            for item in elem.value:
                yield from _walk(item)


def _assert_allow_listed(kept: Dataset) -> None:
    for elem in _walk(kept):
        assert not elem.tag.is_private, elem
        assert elem.keyword in deid.KEEP, f"{elem.keyword or elem.tag} is not on the allow-list"
        assert elem.VR not in {"PN", "DA", "TM", "DT", "LT", "ST", "UT"}, elem
    assert kept.PatientIdentityRemoved == "YES"
    code = kept.DeidentificationMethodCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")
    assert [c.CodeValue for c in kept.DeidentificationMethodCodeSequence] == ["113100"]  # no option claimed
    assert kept.preamble == b"\x00" * 128
    assert set(kept.file_meta.keys()) <= {
        tag_for_keyword(k)
        for k in (
            "FileMetaInformationGroupLength",
            "FileMetaInformationVersion",
            "MediaStorageSOPClassUID",
            "MediaStorageSOPInstanceUID",
            "TransferSyntaxUID",
            "ImplementationClassUID",
            "ImplementationVersionName",
        )
    }


def test_crafted_file_with_every_profile_attribute_keeps_none_of_them(settings):
    raw, original = crafted_dicom()
    assert raw[:14] == b"SECRETPREAMBLE" and raw.count(SECRET.encode()) > 150
    decoded = decode_upload(raw, filename="crafted.dcm")
    stored = decoded.original
    assert stored[:128] == b"\x00" * 128 and stored[128:132] == b"DICM"
    assert SECRET.encode() not in stored, re.findall(rb"SECRET[^\x00]{0,20}", stored)[:10]
    kept = pydicom.dcmread(io.BytesIO(stored))
    _assert_allow_listed(kept)
    for keyword in (k for k in PROFILE_TABLE if tag_for_keyword(k) is not None):
        if keyword in deid.REPLACED_UIDS:
            assert keyword in kept and kept[keyword].value != original[keyword].value, keyword
        else:
            assert keyword not in kept, keyword
    assert "ReferringPhysicianName" not in kept.SharedFunctionalGroupsSequence[0]
    assert kept.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing == [0.5, 0.5]
    assert "SourceApplicationEntityTitle" not in kept.file_meta
    np.testing.assert_array_equal(kept.pixel_array, original.pixel_array)
    assert (kept.RescaleIntercept, kept.Modality, kept.PixelSpacing) == (-1024, "CT", [0.5, 0.5])


def test_uids_are_keyed_with_the_installation_secret(settings):
    raw, original = crafted_dicom()
    first = pydicom.dcmread(io.BytesIO(decode_upload(raw, filename="a.dcm").original))
    again = pydicom.dcmread(io.BytesIO(decode_upload(raw, filename="b.dcm").original))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        old, new = str(original[keyword].value), str(first[keyword].value)
        assert new != old
        assert new != generate_uid(entropy_srcs=[old])  # not the unsalted hash anyone can recompute
        assert new == str(again[keyword].value)  # same UID -> same new UID within an installation
        assert len(new) <= 64 and re.fullmatch(r"2\.25\.[1-9][0-9]*", new)
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    settings.LVIT_DEID_SECRET = "another installation's secret, long enough to count"
    other = pydicom.dcmread(io.BytesIO(decode_upload(raw, filename="c.dcm").original))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert other[keyword].value != first[keyword].value


def test_the_secret_is_generated_once_and_private(tmp_path, monkeypatch):
    from server.config import private_secret

    monkeypatch.delenv("LVIT_DEID_SECRET", raising=False)
    secret = private_secret(tmp_path, "LVIT_DEID_SECRET", "deid_secret")
    assert len(secret) >= 32 and private_secret(tmp_path, "LVIT_DEID_SECRET", "deid_secret") == secret
    assert (tmp_path / "deid_secret").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("LVIT_DEID_SECRET", "x" * 40)
    assert private_secret(tmp_path, "LVIT_DEID_SECRET", "deid_secret") == "x" * 40


def _pydicom_test_files() -> list[str]:
    # the files in pydicom's wheel; get_testdata_files would also try to download the large external set
    paths = []
    for path in sorted(str(p) for p in (Path(DATA_ROOT) / "test_files").rglob("*") if p.is_file()):
        with open(path, "rb") as fh:
            head = fh.read(132)
        if is_dicom(head):
            paths.append(path)
    return paths


PYDICOM_FILES = _pydicom_test_files()
# What the app refuses, and the only reasons it may give: these files are then never stored.
REFUSALS = {"unsupported_format", "unsupported_codec", "corrupt_image", "image_too_large", "invalid_image"}
IDENTIFYING_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "DA", "DT", "TM", "AE"}


def _identifying_strings(ds: Dataset) -> set[str]:
    found = set()
    for elem in _walk(ds):
        if elem.tag.is_private or elem.VR not in IDENTIFYING_VRS or elem.keyword in deid.KEEP:
            continue
        values = elem.value if isinstance(elem.value, list | pydicom.multival.MultiValue) else [elem.value]
        for value in values:
            text = str(value).strip()
            if len(text) >= 8:
                found.add(text)
    return found


def test_pydicom_ships_many_dicom_files():
    assert len(PYDICOM_FILES) > 50


@pytest.mark.parametrize("path", PYDICOM_FILES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_every_pydicom_test_file_is_deidentified_or_refused(path, settings):
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        decoded = decode_upload(raw, filename="upload.dcm")
    except ImageError as exc:
        assert exc.code in REFUSALS, (exc.code, exc.detail)
        return
    kept = pydicom.dcmread(io.BytesIO(decoded.original))
    _assert_allow_listed(kept)
    original = pydicom.dcmread(io.BytesIO(raw))
    kept_values = {str(e.value) for e in _walk(kept) if e.VR != "SQ" and not isinstance(e.value, bytes)}
    for text in _identifying_strings(original) - kept_values:
        assert text.encode() not in decoded.original, f"{text!r} survived"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if keyword in original:
            assert kept[keyword].value != original[keyword].value
            assert str(original[keyword].value).encode() not in decoded.original
