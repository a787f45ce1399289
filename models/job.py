"""The restoration job: one row per upload, from `pending` to `completed`, `failed` or `cancelled`."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from models.error_codes import ErrorCode


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    # By its owner: at once while pending, within seconds while processing (the worker withdraws
    # the prompt from ComfyUI); no result is kept, the original is.
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class RestorationJob(Model):
    """A user's restoration request.

    Image URLs are not stored: they are minted from the object keys when the job is read, because
    signed URLs expire. `id` doubles as ComfyUI's `prompt_id`, so ComfyUI's own record of the run
    can be found from the job alone.
    """

    id = fields.UUIDField(primary_key=True)
    user_id = fields.CharField(max_length=255)
    status = fields.CharEnumField(JobStatus, max_length=16, default=JobStatus.PENDING)
    denoise = fields.FloatField()
    original_key = fields.CharField(max_length=255)
    processed_key = fields.CharField(max_length=255, null=True)
    # Set exactly when failed: the owner's message (no hosts, URLs or paths), the contract's
    # code, and whether submitting the same photo again may succeed.
    error_message = fields.TextField(null=True)
    error_code = fields.CharEnumField(ErrorCode, max_length=32, null=True)
    retryable = fields.BooleanField(null=True)
    progress = fields.FloatField(null=True)
    # Grows with every change of the row; events carry it so a watcher can tell old from new
    # and notice a gap.
    seq = fields.IntField(default=0)
    # Which worker process holds the job, and until when its claim is good without a heartbeat.
    worker_id = fields.CharField(max_length=64, null=True)
    lease_expires_at = fields.DatetimeField(null=True)
    # The ComfyUI server the job's prompt was sent to (its base URL), so whoever settles the job
    # after its worker is gone asks the right server. Operators only: never shown to the owner.
    comfy_server = fields.CharField(max_length=255, null=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "restoration_jobs"
        indexes = (("user_id", "created_at"), ("status", "updated_at"))

    def __str__(self) -> str:
        return f"RestorationJob({self.id}, {self.status})"
