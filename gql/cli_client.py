"""`restoration submit`: a small client for people and scripts.

Uploads a photo through the GraphQL multipart mutation (files over `DIRECT_UPLOAD_BYTES`: as a
direct upload, straight to storage at a signed URL, then `restoreUpload`), follows the job over the
`jobUpdated` subscription (graphql-transport-ws) with a progress bar on stderr, and downloads the
result. With `--cancel-on-interrupt`, Ctrl-C (SIGINT, or SIGTERM) while following the job cancels it
on the server (`cancelJob`) and exits with the signal's status (128 + its number). Every submit
carries an idempotency key derived from the file's bytes and the denoise (`--idempotency-key`
overrides it), so running the same command again gets the first run's job back, not a second job.
Defaults to the server and token that `restoration dev` wrote to `./.data/`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

T = TypeVar("T")

DATA_DIR = Path(".data")
JOB_FIELDS = "id status progress processedImageUrl errorMessage"
MUTATION = (
    "mutation($file: Upload!, $denoise: Float, $key: String) "
    f"{{ restoreImage(file: $file, denoise: $denoise, idempotencyKey: $key) {{ {JOB_FIELDS} }} }}"
)
SUBSCRIPTION = f"subscription($id: ID!) {{ jobUpdated(id: $id) {{ {JOB_FIELDS} }} }}"
CREATE_UPLOAD = "mutation($size: Int!) { createUpload(size: $size) { id url method headers { name value } } }"
RESTORE_UPLOAD = (
    "mutation($id: ID!, $denoise: Float, $key: String) "
    f"{{ restoreUpload(uploadId: $id, denoise: $denoise, idempotencyKey: $key) {{ {JOB_FIELDS} }} }}"
)
CANCEL_JOB = "mutation($id: ID!) { cancelJob(id: $id) { id status } }"
# What `--cancel-on-interrupt` reacts to: Ctrl-C, and a polite kill.
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)
# Larger photos go straight to storage: the API is not held for the whole transfer (slow networks),
# and the file is streamed from disk instead of read whole.
DIRECT_UPLOAD_BYTES = 4 * 1024 * 1024
UPLOAD_CHUNK_BYTES = 256 * 1024
# A large photo over a slow link takes a while; the connection itself must not.
DIRECT_PUT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
BAR_WIDTH = 30


class SubmitError(Exception):
    """Something a person must be told, in one line."""


def _default(value: str | None, file_name: str, what: str) -> str:
    if value:
        return value
    path = DATA_DIR / file_name
    if not path.exists():
        raise SubmitError(f"no {what} given and no {path} (start `restoration dev` here, or pass --{what})")
    return path.read_text().strip()


def _graphql_errors(body: dict[str, Any]) -> None:
    if body.get("errors"):
        error = body["errors"][0]
        code = error.get("extensions", {}).get("code", "ERROR")
        raise SubmitError(f"{code}: {error.get('message')}")


def idempotency_key(photo: Path, denoise: float | None) -> str:
    """The key `restoration submit` sends unless told one: derived from the file's bytes and the
    denoise asked for, so running the same command again (after a network drop, say) gets the job
    the first run made instead of a second one, for as long as the server remembers keys."""
    sha256 = hashlib.sha256()
    with open(photo, "rb") as file:
        while chunk := file.read(UPLOAD_CHUNK_BYTES):
            sha256.update(chunk)
    asked = "default" if denoise is None else repr(float(denoise))
    return f"submit-{sha256.hexdigest()}-denoise-{asked}"


async def upload(client: httpx.AsyncClient, photo: Path, denoise: float | None, key: str | None) -> dict[str, Any]:
    """Submit the photo: a direct upload when it is large, else one multipart request."""
    size = (await asyncio.to_thread(photo.stat)).st_size
    if size > DIRECT_UPLOAD_BYTES:
        return await direct_upload(client, photo, size, denoise, key)
    return await multipart_upload(client, photo, denoise, key)


async def _mutation(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    if response.status_code != 200:
        raise SubmitError(f"upload refused: HTTP {response.status_code} {response.text[:200]}")
    body = response.json()
    _graphql_errors(body)
    data: dict[str, Any] = body["data"]
    return data


async def _chunks(photo: Path) -> AsyncIterator[bytes]:
    with open(photo, "rb") as file:  # noqa: ASYNC230 - every read below runs in a thread
        while chunk := await asyncio.to_thread(file.read, UPLOAD_CHUNK_BYTES):
            yield chunk


async def direct_upload(
    client: httpx.AsyncClient, photo: Path, size: int, denoise: float | None, key: str | None
) -> dict[str, Any]:
    """createUpload, PUT the file (streamed) to the signed URL with its headers, restoreUpload."""
    ticket = (await _mutation(client, CREATE_UPLOAD, size=size))["createUpload"]
    headers = {header["name"]: header["value"] for header in ticket["headers"]}
    # The signed URL carries its own authorization: the API's token is not sent to storage.
    async with httpx.AsyncClient(timeout=DIRECT_PUT_TIMEOUT) as plain:
        sent = await plain.request(ticket["method"], ticket["url"], headers=headers, content=_chunks(photo))
    if sent.status_code >= 300:
        raise SubmitError(f"storage refused the upload: HTTP {sent.status_code} {sent.text[:200]}")
    restored = await _mutation(client, RESTORE_UPLOAD, id=ticket["id"], denoise=denoise, key=key)
    job: dict[str, Any] = restored["restoreUpload"]
    return job


async def multipart_upload(
    client: httpx.AsyncClient, photo: Path, denoise: float | None, key: str | None
) -> dict[str, Any]:
    operations = {"query": MUTATION, "variables": {"file": None, "denoise": denoise, "key": key}}
    data = await asyncio.to_thread(photo.read_bytes)
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (photo.name, data, "application/octet-stream")},
    )
    if response.status_code != 200:
        raise SubmitError(f"upload refused: HTTP {response.status_code} {response.text[:200]}")
    body = response.json()
    _graphql_errors(body)
    job: dict[str, Any] = body["data"]["restoreImage"]
    return job


def _draw(job: dict[str, Any]) -> None:
    progress = job.get("progress") or (1.0 if job["status"] == "COMPLETED" else 0.0)
    filled = int(progress * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    sys.stderr.write(f"\r[{bar}] {progress * 100:5.1f}% {job['status'].lower():<10}")
    sys.stderr.flush()


async def follow(url: str, token: str, job_id: str) -> dict[str, Any]:
    """The job's final state, drawing a progress bar meanwhile."""
    ws_url = url.replace("https://", "wss://").replace("http://", "ws://") + "/graphql"
    last: dict[str, Any] = {}
    async with connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        await socket.send(
            json.dumps(
                {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION, "variables": {"id": job_id}}}
            )
        )
        async for raw in socket:
            message = json.loads(raw)
            if message.get("type") == "next":
                _graphql_errors(message["payload"])
                last = message["payload"]["data"]["jobUpdated"]
                _draw(last)
            elif message.get("type") in ("complete", "error"):
                break
    sys.stderr.write("\n")
    if socket.close_code == 4403:
        raise SubmitError("the server refused the token")
    return last


class Interrupted(Exception):
    """A signal in `INTERRUPTS` arrived while the job was followed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class CancelOnInterrupt:
    """While entered, a signal in `INTERRUPTS` stops `follow()`ing the job: Interrupted is raised
    from it. Leaving restores the default handling, so a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._task: asyncio.Future[Any] | None = None

    def __enter__(self) -> CancelOnInterrupt:
        loop = asyncio.get_running_loop()
        for signum in INTERRUPTS:
            loop.add_signal_handler(signum, self._fire, signum)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        loop = asyncio.get_running_loop()
        for signum in INTERRUPTS:
            loop.remove_signal_handler(signum)

    def _fire(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        if self._task is not None:
            self._task.cancel()

    async def follow(self, following: Coroutine[Any, Any, T]) -> T:
        task = self._task = asyncio.ensure_future(following)
        if self.signum is not None:  # arrived before there was anything to stop
            task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            if self.signum is None:  # cancelled from outside, not by a signal
                raise
        raise Interrupted(self.signum)


async def cancel_on_server(client: httpx.AsyncClient, job_id: str) -> str:
    """Cancel the job (`cancelJob`); what became of it, in words."""
    response = await client.post("/graphql", json={"query": CANCEL_JOB, "variables": {"id": job_id}})
    body = response.json() if response.status_code == 200 else {}
    errors = body.get("errors") or []
    if errors and errors[0].get("extensions", {}).get("code") == "CONFLICT":
        return f"job {job_id} had already finished, not cancelled"
    if response.status_code != 200 or errors:
        detail = errors[0].get("message") if errors else f"HTTP {response.status_code}"
        raise SubmitError(f"job {job_id} could not be cancelled: {detail}")
    return f"job {job_id} cancelled"


def _announce(job: dict[str, Any]) -> None:
    print(f"job {job['id']} {job['status'].lower()}", flush=True)  # noqa: T201 - the command's output


async def follow_cancelling(url: str, token: str, job: dict[str, Any]) -> dict[str, Any]:
    """`follow()`, announcing the job once a signal would cancel it; Interrupted on a signal."""
    with CancelOnInterrupt() as interrupts:
        _announce(job)  # only now: whoever reads the id may interrupt at once
        return await interrupts.follow(follow(url, token, job["id"]))


async def run(args: argparse.Namespace) -> int:
    url = _default(args.url, "dev-url", "url").rstrip("/")
    token = _default(args.token, "dev-token", "token")
    watching = bool(args.watch or args.out)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        key = args.idempotency_key or await asyncio.to_thread(idempotency_key, args.photo, args.denoise)
        job = await upload(client, args.photo, args.denoise, key)
        if watching and args.cancel_on_interrupt:
            try:
                final = await follow_cancelling(url, token, job)
            except Interrupted as exc:
                sys.stderr.write("\n")
                print(await cancel_on_server(client, job["id"]), flush=True)  # noqa: T201 - the command's output
                return 128 + exc.signum
        else:
            _announce(job)
            if not watching:
                return 0
            final = await follow(url, token, job["id"])
        if final.get("status") == "CANCELLED":
            raise SubmitError(f"job {job['id']} was cancelled")
        if final.get("status") != "COMPLETED":
            raise SubmitError(f"job {job['id']} failed: {final.get('errorMessage') or 'unknown error'}")
        out = args.out or Path(f"{args.photo.stem}.restored.png")
        # A signed URL carries its own authorization (S3 refuses a second one in a header).
        async with httpx.AsyncClient(timeout=120) as plain:
            response = await plain.get(final["processedImageUrl"])
        response.raise_for_status()
        await asyncio.to_thread(out.write_bytes, response.content)
        print(f"restored image saved to {out}")  # noqa: T201 - the command's output
    return 0


def submit_cli(args: argparse.Namespace) -> int:
    if not args.photo.is_file():
        print(f"restoration submit: no such file: {args.photo}", file=sys.stderr)  # noqa: T201
        return 2
    try:
        return asyncio.run(run(args))
    except SubmitError as exc:
        print(f"restoration submit: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except (httpx.HTTPError, OSError, WebSocketException) as exc:
        print(f"restoration submit: cannot reach the server: {exc}", file=sys.stderr)  # noqa: T201
        return 1
