"""SIGTERM, as an orchestrator sends it before a deploy: a worker lets its running job finish and
exits 0 within its grace period; the API finishes the request in flight and closes open
`jobUpdated` subscriptions with a close frame (a client can tell a restart from a network failure)
instead of dropping them."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator

from websockets.exceptions import ConnectionClosed

from tasks.worker import SHUTDOWN_GRACE_SECONDS as WORKER_GRACE
from tests.fixtures import images
from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.s3 import S3ServerHandle
from tests.gql.ws import JOB_UPDATED, GraphQLSocket
from tests.system.faults.harness import Cluster, comfy_running, read_job, submit, wait_for_status, wait_terminal

SERVICE_TIME = 3.0
API_GRACE = 10.0  # `restoration api`: uvicorn's timeout_graceful_shutdown
PROPER_CLOSE_CODES = (1000, 1001, 1012)  # normal closure, going away, service restart


async def test_worker_stopped_mid_job_finishes_it_then_exits_0(
    cluster: Cluster, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle, client_factory, record_property
) -> None:
    await comfy.set_faults(service_time=SERVICE_TIME)
    await cluster.start_api()
    worker = await cluster.start_worker()
    client = client_factory(cluster.api_url)
    job_id = await submit(client)
    await comfy_running(comfy, job_id)

    worker.terminate()
    stopped = time.monotonic()

    job, seconds = await wait_terminal(client, job_id, within=SERVICE_TIME + 10, since=stopped)
    assert job["status"] == "completed", (job, cluster.logs())
    code = await worker.exited(within=WORKER_GRACE)
    exit_seconds = time.monotonic() - stopped
    record_property("seconds_to_terminal", round(seconds, 2))
    record_property("seconds_to_exit", round(exit_seconds, 2))
    assert code == 0, worker.log()[-3000:]
    assert exit_seconds < SERVICE_TIME + 10
    assert "Traceback" not in worker.log()
    assert s3_server.keys() == [f"originals/{job_id}.jpg", f"restored/{job_id}.png"]

    await cluster.start_worker()
    fresh, _ = await wait_terminal(client, await submit(client), within=15)
    assert fresh["status"] == "completed", (fresh, cluster.logs())


def multipart(photo: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def test_api_stopped_finishes_the_request_in_flight_and_closes_subscriptions_properly(
    cluster: Cluster,
    comfy: ComfyEmulatorHandle,
    s3_server: S3ServerHandle,
    token: str,
    client_factory,
    record_property,
) -> None:
    await comfy.set_faults(service_time=SERVICE_TIME)
    api = await cluster.start_api()
    await cluster.start_worker()
    client = client_factory(cluster.api_url)
    watched = await submit(client)
    await wait_for_status(client, watched, ("processing",), within=10)
    socket = await GraphQLSocket.open(cluster.api_url)
    assert (await socket.init({"Authorization": f"Bearer {token}"}))["type"] == "connection_ack"
    await socket.subscribe(JOB_UPDATED, {"id": watched})
    assert (await socket.receive())["payload"]["data"]["jobUpdated"]["status"] == "PROCESSING"

    # An upload whose body is still arriving when the signal comes.
    body, content_type = multipart(images.jpeg_bytes(640, 480))
    half = len(body) // 2
    first_half_sent, signalled = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield body[:half]
        first_half_sent.set()
        await signalled.wait()
        await asyncio.sleep(0.5)  # the server is shutting down by now
        yield body[half:]

    upload = asyncio.create_task(
        client.post(
            "/api/v1/restoration/restore",
            content=slow_body(),
            headers={"Content-Type": content_type, "Content-Length": str(len(body))},
        )
    )
    await first_half_sent.wait()
    await asyncio.sleep(0.2)
    api.popen.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    signalled.set()

    response = await upload
    assert response.status_code == 202, response.text
    in_flight = response.json()["id"]

    try:
        while True:  # whatever the socket still delivers, until it is closed
            await socket.receive(wait=API_GRACE + 5)
    except ConnectionClosed as closed:
        close_code = closed.rcvd.code if closed.rcvd is not None else 1006
    record_property("websocket_close_code", close_code)
    code = await api.exited(within=API_GRACE + 5)
    record_property("seconds_to_exit", round(time.monotonic() - stopped, 2))
    record_property("exit_code", code)
    assert code in (0, -signal.SIGTERM), api.log()[-3000:]
    assert close_code in PROPER_CLOSE_CODES, f"subscription dropped with {close_code}"

    # A new API process; the worker carried on meanwhile.
    await cluster.start_api()
    client = client_factory(cluster.api_url)
    for job_id in (watched, in_flight, await submit(client)):
        job, _ = await wait_terminal(client, job_id, within=SERVICE_TIME * 3 + 10)
        assert job["status"] == "completed", (job, cluster.logs())
    assert s3_server.keys(f"originals/{in_flight}") == [f"originals/{in_flight}.jpg"]
    assert (await read_job(client, watched))["processed_image_url"]
