"""A direct-upload ticket: one user's permission to stage one photo under `uploads/{id}`."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class UploadTicket(Model):
    """Issued by `POST /uploads` (or `createUpload`), used at most once by the restore.

    The row outlives its use until `expires_at`, because the signed PUT URL stays valid until then
    and a client may still send to it: the sweep deletes whatever is staged under the ticket's key
    after it expired, then the row.
    """

    id = fields.UUIDField(primary_key=True)
    user_id = fields.CharField(max_length=255)
    # The exact length the signed URL allows and the restore insists on.
    size = fields.BigIntField()
    content_type = fields.CharField(max_length=255, null=True)
    expires_at = fields.DatetimeField()
    # Set by the one restore that took the ticket; a used ticket is never taken again.
    used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "upload_tickets"
        indexes = (("expires_at",),)

    def __str__(self) -> str:
        return f"UploadTicket({self.id}, {self.user_id})"
