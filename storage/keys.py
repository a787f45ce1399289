"""The storage key scheme, in one place: where originals, results and staged uploads live.

originals/{job_id}.{ext}    the photo as uploaded (ext from the detected format), kept forever
restored/{job_id}.png       ComfyUI's result, metadata stripped, kept forever
uploads/{ticket_id}         a direct upload staged by the client, removed after use or expiry
"""

from __future__ import annotations

import uuid

ORIGINALS_PREFIX = "originals/"
RESTORED_PREFIX = "restored/"
UPLOADS_PREFIX = "uploads/"


def original_key(job_id: uuid.UUID | str, extension: str) -> str:
    return f"{ORIGINALS_PREFIX}{job_id}.{extension}"


def restored_key(job_id: uuid.UUID | str) -> str:
    return f"{RESTORED_PREFIX}{job_id}.png"


def upload_key(ticket_id: uuid.UUID | str) -> str:
    return f"{UPLOADS_PREFIX}{ticket_id}"
