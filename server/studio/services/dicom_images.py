"""Re-deriving a DICOM case's picture from its stored (de-identified) original with the current display rules
(VOI LUT Sequence, VOILUTFunction, palette colour), for cases uploaded before those rules existed."""

from __future__ import annotations

from django.db import transaction

from server.studio import imaging
from server.studio.models import Case
from server.studio.services.common import delete_files_on_commit, written_files


def case_image_redecode(*, case: Case, apply: bool = False) -> bool:
    """Whether the case's picture differs from what its original decodes to now; with ``apply``, store the new one.

    The geometry never changes (same frame, same size), so masks stay aligned; a size mismatch is refused. The
    window preset chosen at upload (``meta.window.preset``) is used again. The new file is written first and the old
    one deleted once the row is saved, so a failure leaves the case as it was.
    """
    if case.original_format != "dicom" or not case.original:
        return False
    with case.original.open("rb") as fh:
        original = fh.read()
    with case.image.open("rb") as fh:
        current = fh.read()
    preset = ((case.meta or {}).get("window") or {}).get("preset")
    decoded = imaging.decode_upload(original, filename="original.dcm", window=preset)
    if (decoded.width, decoded.height) != (case.width, case.height):
        raise imaging.ImageError(
            f"case {case.pk} decodes to {decoded.width}x{decoded.height}, not {case.width}x{case.height}; left as it is"
        )
    if decoded.normalized_png == current:
        return False
    if apply:
        old_name = case.image.name
        with written_files() as janitor, transaction.atomic():
            locked = Case.objects.select_for_update().get(pk=case.pk)
            janitor.save(locked.image, "image.png", decoded.normalized_png)
            locked.channels = decoded.channels
            locked.meta = {
                **(locked.meta or {}),
                "window": decoded.meta.get("window"),
                "body_box": decoded.meta.get("body_box"),
            }
            locked.save(update_fields=["image", "channels", "meta", "updated_at"])
            delete_files_on_commit([old_name])
    return True
