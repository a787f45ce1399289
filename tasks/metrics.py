"""Prometheus metrics of both processes (prometheus-client's default registry).

The API serves them at `/metrics`; each worker serves its own on WORKER_METRICS_PORT, so
Prometheus scrapes every process (no multiprocess directory to share).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from models.error_codes import ErrorCode

# Buckets spanning a fast CPU test (tens of ms) to a slow GPU job near the 5-minute limit.
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 600)
UPLOAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

JOBS_CREATED = Counter("restoration_jobs_created_total", "Jobs accepted by the API.")
JOBS_COMPLETED = Counter("restoration_jobs_completed_total", "Jobs that reached completed.")
JOBS_FAILED = Counter("restoration_jobs_failed_total", "Jobs that reached failed, by error code.", ["code"])
JOBS_CANCELLED = Counter("restoration_jobs_cancelled_total", "Jobs their owner cancelled (counted by the API).")
JOBS_REQUEUED = Counter("restoration_jobs_requeued_total", "Pending jobs queued again after their message was lost.")
JOBS_SETTLED = Counter("restoration_jobs_settled_total", "Orphaned jobs settled by the reconciler.")
QUEUE_DEPTH = Gauge("restoration_queue_depth", "Jobs waiting in the Redis queue.")
QUEUE_WAIT = Histogram("restoration_queue_wait_seconds", "From submit to a worker's claim.", buckets=JOB_BUCKETS)
COMFY_EXECUTION = Histogram(
    "restoration_comfyui_execution_seconds", "From queueing the prompt to its end in ComfyUI.", buckets=JOB_BUCKETS
)
UPLOAD = Histogram(
    "restoration_upload_seconds", "Submit handling: validation, storage, row, enqueue.", buckets=UPLOAD_BUCKETS
)
END_TO_END = Histogram("restoration_job_seconds", "From submit to completed or failed.", buckets=JOB_BUCKETS)
OPEN_SUBSCRIPTIONS = Gauge("restoration_open_subscriptions", "jobUpdated subscriptions open in this process.")
COMFY_UP = Gauge(
    "restoration_comfyui_up", "1 when a ComfyUI server answers (API) or a worker's websocket to one is open."
)
# Per ComfyUI server, labelled by its base URL: what an operator needs to see one GPU host misbehave.
SERVER_UP = Gauge("restoration_comfyui_server_up", "1 while this worker can send jobs to the server.", ["server"])
SERVER_IN_FLIGHT = Gauge(
    "restoration_comfyui_server_in_flight", "Our prompts the server holds now, across all workers.", ["server"]
)
SERVER_DONE = Counter("restoration_comfyui_server_jobs_completed_total", "Jobs completed on the server.", ["server"])
SERVER_FAILED = Counter("restoration_comfyui_server_jobs_failed_total", "Jobs failed on the server.", ["server"])
SERVER_LATENCY = Gauge(
    "restoration_comfyui_server_latency_seconds", "How long the server took to answer the last probe.", ["server"]
)

# Every code is exported from the start (at 0), so a rate or an alert on a code that has not
# happened yet reads 0 rather than "no data".
for _code in ErrorCode:
    JOBS_FAILED.labels(_code.value)
