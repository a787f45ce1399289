"""Upload throughput: API submissions/s vs raw signed PUTs/s to the same S3-compatible server, one run.

Run by hand (not by pytest): `.venv/bin/python tests/bench/ingest_throughput.py [--clients 16]
[--uploads 48]`. Brings up the stack (real `restoration api`, moto S3, PostgreSQL, Redis; no worker:
jobs stay queued), then `clients` concurrent clients each send `uploads` copies of one ~5.6 MB JPEG
three times: as presigned S3 PUTs (boto3 signs, httpx sends) straight to the bucket, through
`POST /api/v1/restoration/restore` (multipart), and as direct uploads (a ticket from `POST
/uploads`, the PUT to its presigned URL, `POST /uploads/{id}/restore`: the API streams the staged
object back, judges it and copies it inside the store). Prints the three rates and each path's
ratio to the raw PUTs (target for multipart: at least 70 %).

moto's server is single-process Python and the machine's cores are shared by the clients, moto and
the API, so the raw rate is moto's own; a faster store would show the API's own cost more clearly.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from storage.s3 import make_s3_client
from tests.bench.stack import BUCKET, bench_redis_url, running_stack

TARGET_RATIO = 0.70
# Noise compresses badly: 2500 x 1890 at JPEG quality 95 is about 5.6 MB.
PHOTO_SIZE = (2500, 1890)


def photo() -> bytes:
    width, height = PHOTO_SIZE
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


async def run_clients(clients: int, uploads: int, one: Callable[[httpx.AsyncClient], Awaitable[None]]) -> float:
    """Uploads per second of `clients` concurrent clients each doing `uploads` uploads with `one`."""

    async def client_loop() -> None:
        async with httpx.AsyncClient(timeout=120) as client:
            for _ in range(uploads):
                await one(client)

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return clients * uploads / (time.perf_counter() - started)


async def measure(
    clients: int, uploads: int, *, code: Path | None, paths: list[str], env: dict[str, str]
) -> tuple[dict[str, float], int]:
    data = photo()
    if code:
        env = {**env, "PYTHONPATH": str(code)}
    async with running_stack(service_time=0.1, workers=0, env=env, redis_url=bench_redis_url()) as stack:
        endpoint = stack.env["S3_ENDPOINT_URL"]
        s3 = make_s3_client(region="us-east-1", endpoint_url=endpoint, access_key_id="bench", secret_access_key="bench")

        async def raw_put(client: httpx.AsyncClient) -> None:
            key = f"raw/{uuid.uuid4()}.jpg"
            url = s3.generate_presigned_url(
                "put_object", Params={"Bucket": BUCKET, "Key": key, "ContentType": "image/jpeg"}, ExpiresIn=600
            )
            response = await client.put(url, content=data, headers={"Content-Type": "image/jpeg"})
            response.raise_for_status()

        headers = {"Authorization": f"Bearer {stack.token}"}

        async def submit(client: httpx.AsyncClient) -> None:
            response = await client.post(
                f"{stack.api_url}/api/v1/restoration/restore",
                files={"file": ("photo.jpg", data, "image/jpeg")},
                headers=headers,
            )
            if response.status_code != 202:
                raise RuntimeError(f"submit answered {response.status_code}: {response.text[:200]}")

        async def direct(client: httpx.AsyncClient) -> None:
            ticket = await client.post(
                f"{stack.api_url}/api/v1/restoration/uploads",
                json={"size": len(data), "content_type": "image/jpeg"},
                headers=headers,
            )
            if ticket.status_code != 201:
                raise RuntimeError(f"the ticket answered {ticket.status_code}: {ticket.text[:200]}")
            body = ticket.json()
            sent = await client.request(body["method"], body["url"], content=data, headers=body["headers"])
            sent.raise_for_status()
            restored = await client.post(
                f"{stack.api_url}/api/v1/restoration/uploads/{body['id']}/restore", headers=headers
            )
            if restored.status_code != 202:
                raise RuntimeError(f"the restore answered {restored.status_code}: {restored.text[:200]}")

        one = {"raw": raw_put, "multipart": submit, "direct": direct}
        for path in paths:  # warm every path up first (connections, imports, caches)
            await run_clients(2, 2, one[path])
        rates = {path: await run_clients(clients, uploads, one[path]) for path in paths}
    return rates, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--uploads", type=int, default=48, help="uploads per client")
    parser.add_argument("--code", type=Path, default=None, help="run the API from this checkout (before/after)")
    parser.add_argument("--paths", default="raw,multipart,direct", help="in this order")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="an API setting")
    args = parser.parse_args()
    paths = args.paths.split(",")
    env = dict(item.split("=", 1) for item in args.env)
    rates, size = asyncio.run(measure(args.clients, args.uploads, code=args.code, paths=paths, env=env))
    print(f"photo: {size / 1e6:.1f} MB JPEG; {args.clients} clients x {args.uploads} uploads, cores: {os.cpu_count()}")  # noqa: T201
    labels = {"raw": "raw signed PUTs", "multipart": "API multipart", "direct": "API direct upload"}
    for path in paths:
        line = f"{labels[path] + ':':19} {rates[path]:6.1f} uploads/s"
        if path != "raw" and "raw" in rates:
            line += f"  {rates[path] / rates['raw']:6.1%} of raw"
        print(line)  # noqa: T201
    ratio = rates["multipart"] / rates["raw"] if "multipart" in rates and "raw" in rates else 0.0
    verdict = "ok" if ratio >= TARGET_RATIO else f"UNDER {TARGET_RATIO:.0%}"
    print(f"multipart ratio:    {ratio:6.1%}  {verdict}")  # noqa: T201
    sys.exit(0 if ratio >= TARGET_RATIO else 1)


if __name__ == "__main__":
    main()
