"""RSS growth of the API process tree while it receives one ~50 MiB upload (target: at most 20 MiB).

Run by hand (not by pytest): `.venv/bin/python tests/bench/ingest_memory.py [--formats jpeg,png,webp]
[--paths rest,graphql,direct]` (`heic`, one 9 MP picture, and `heic-grid`, 12 MP in 512x512 tiles as
phones write them, are formats too, not run by default: encoding the noise photos takes x265 a
while). Each case gets a fresh stack (real `restoration api`, moto S3, PostgreSQL,
Redis, no worker), warms the path up with a small photo of the same format, then samples the RSS of
the API process and all its descendants every 20 ms while one large photo of that format is posted
and answered. Prints the baseline, the peak and the growth (peak - baseline) per case; with
`--before CHECKOUT`, each case is first measured with the API run from that checkout (e.g. a `git
archive` of an earlier commit) and the growth ratio is printed beside it, from the same run.

`direct` is the direct-upload path: a ticket (`POST /uploads`), the PUT straight to the presigned
S3 URL (moto runs in this process, so the PUT costs the API nothing), then `POST
/uploads/{id}/restore`, where the API streams the staged object into its spool, judges it and
copies it to `originals/` inside the store.

The photos are noise, so they compress badly: a ~48 MiB file of each format is a real image of
about 25 (JPEG) or 17 (PNG, WebP) megapixels, not a small picture padded out.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pillow_heif
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.stack import bench_redis_url, rss_mib, running_stack
from tests.fixtures import images

SAMPLE_SECONDS = 0.02
TARGET_MIB = 20.0
# Width x height of the noise photos: each encodes to just under 50 MiB.
# `webp-lossy` cannot reach 50 MiB (libwebp's first partition overflows on noise this large): it is
# the same 16 megapixels in about 10 MiB, to show that lossy WebP costs no full-size buffer.
SIZES = {"jpeg": (5900, 4300), "png": (4096, 4000), "webp": (4096, 4000), "webp-lossy": (4096, 4000)}
SIZES["heic"] = (3000, 3000)  # larger single-image HEICs from x265 do not decode with libde265
# What phones write: a grid of 512x512 tiles, here 12 MP (an iPhone's 4032x3024) in about 17 MiB.
SIZES["heic-grid"] = (4032, 3024)
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "heic": "image/heic"}
CONTENT_TYPES["webp-lossy"] = "image/webp"
CONTENT_TYPES["heic-grid"] = "image/heic"
# Pillow's name for each format
PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "webp-lossy": "WEBP", "heic": "HEIF"}
PILLOW_FORMATS["heic-grid"] = "HEIF"
RESTORE_MUTATION = "mutation($file: Upload!) { restoreImage(file: $file) { id status } }"


def photo(kind: str, cache: Path) -> Path:
    """A noise photo of `kind` just under 50 MiB, made once and kept in `cache`."""
    path = cache / f"noise.{kind}"
    if not path.exists():
        width, height = SIZES[kind]
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
        params: dict[str, object] = {
            "jpeg": {"quality": 100},
            "png": {"compress_level": 1},
            "webp": {"lossless": True, "method": 0, "quality": 0},
            "webp-lossy": {"quality": 75},
            # Not 100: that is x265's lossless mode (4:4:4), which libde265 cannot decode (415).
            "heic": {"quality": 95},
            "heic-grid": {"quality": 90, "tile_size": 512},
        }[kind]  # type: ignore[assignment]
        if kind.startswith("heic"):
            pillow_heif.register_heif_opener()
        buffer = io.BytesIO()
        image.save(buffer, PILLOW_FORMATS[kind], **params)
        path.write_bytes(buffer.getvalue())
    return path


def small_photo(kind: str) -> bytes:
    if kind == "heic-grid":  # 2x2 tiles of 512x512: the tile path warms up with tiles of the same size
        return images.encode(images.quadrants(1024, 768), "HEIF", tile_size=512)
    return images.encode(images.quadrants(256, 192), PILLOW_FORMATS[kind])


def tree_pids(root: int) -> Iterator[int]:
    yield root
    for task in Path(f"/proc/{root}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            yield from tree_pids(int(child))


def tree_rss_mib(root: int) -> float:
    return sum(rss_mib(pid) for pid in tree_pids(root))


class Sampler:
    """Samples the tree's RSS every SAMPLE_SECONDS in a thread of its own."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(tree_rss_mib(self.pid))
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def post(client: httpx.AsyncClient, path: str, name: str, data: bytes | io.BufferedReader, kind: str) -> None:
    content_type = CONTENT_TYPES[kind]
    if path == "direct":
        await direct_upload(client, data, content_type)
        return
    if path == "rest":
        response = await client.post("/api/v1/restoration/restore", files={"file": (name, data, content_type)})
        if response.status_code != 202:
            raise RuntimeError(f"REST upload answered {response.status_code}: {response.text[:200]}")
        return
    operations = {"query": RESTORE_MUTATION, "variables": {"file": None}}
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (name, data, content_type)},
    )
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"GraphQL upload answered {response.status_code}: {str(body)[:200]}")


async def direct_upload(client: httpx.AsyncClient, data: bytes | io.BufferedReader, content_type: str) -> None:
    """Ticket, PUT to storage, restore: the direct-upload flow of the contract."""
    if not isinstance(data, bytes):
        data = data.read()  # httpx's AsyncClient sends no sync file; this process is not measured
    size = len(data)
    ticket = await client.post("/api/v1/restoration/uploads", json={"size": size, "content_type": content_type})
    if ticket.status_code != 201:
        raise RuntimeError(f"the ticket answered {ticket.status_code}: {ticket.text[:200]}")
    body = ticket.json()
    async with httpx.AsyncClient(timeout=120) as storage:  # no API token to the store
        sent = await storage.request(body["method"], body["url"], content=data, headers=body["headers"])
    if sent.status_code not in (200, 204):
        raise RuntimeError(f"the PUT to storage answered {sent.status_code}: {sent.text[:200]}")
    restored = await client.post(f"/api/v1/restoration/uploads/{body['id']}/restore")
    if restored.status_code != 202:
        raise RuntimeError(f"the restore answered {restored.status_code}: {restored.text[:200]}")


async def measure(kind: str, path: str, cache: Path, code: Path | None) -> tuple[float, float, float, float]:
    """(baseline MiB, peak MiB, growth MiB, file MiB) for one upload of `kind` through `path`."""
    large = photo(kind, cache)
    env = {"PYTHONPATH": str(code)} if code else None
    async with running_stack(service_time=0.1, workers=0, redis_url=bench_redis_url(), env=env) as stack:
        headers = {"Authorization": f"Bearer {stack.token}"}
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=120) as client:
            for _ in range(3):  # imports, pools, codecs and caches are warm before measuring
                await post(client, path, f"small.{kind}", small_photo(kind), kind)
            await asyncio.sleep(0.5)
            baseline = tree_rss_mib(stack.api_pid)
            with Sampler(stack.api_pid) as sampler, large.open("rb") as data:
                await post(client, path, large.name, data, kind)
                await asyncio.sleep(0.1)
        peak = max(sampler.samples)
    return baseline, peak, peak - baseline, large.stat().st_size / 2**20


async def main_async(formats: list[str], paths: list[str], cache: Path, code: Path | None, before: Path | None) -> bool:
    """Every case; with `before`, each case is measured first with the API run from that checkout,
    then with `code`, and the growth of both and their ratio are printed on one line."""
    ok = True
    columns = f"{'path':8} {'format':9} {'file MiB':>9} {'base MiB':>9} {'peak MiB':>9} {'growth MiB':>11}"
    print(columns + (f" {'before MiB':>11} {'after/before':>13}" if before else ""))  # noqa: T201
    for path in paths:
        for kind in formats:
            earlier = (await measure(kind, path, cache, before))[2] if before else None
            baseline, peak, growth, size = await measure(kind, path, cache, code)
            ok = ok and growth <= TARGET_MIB
            verdict = "ok" if growth <= TARGET_MIB else f"OVER {TARGET_MIB:.0f}"
            line = f"{path:8} {kind:9} {size:9.1f} {baseline:9.1f} {peak:9.1f} {growth:11.1f}"
            if earlier is not None:
                line += f" {earlier:11.1f} {growth / earlier if earlier > 0 else float('nan'):13.3f}"
            print(f"{line}  {verdict}")  # noqa: T201
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default="jpeg,png,webp")
    parser.add_argument("--paths", default="rest,graphql,direct")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "restoration-bench-photos")
    parser.add_argument("--code", type=Path, default=None, help="run the API from this checkout (before/after)")
    parser.add_argument("--before", type=Path, default=None, help="also measure each case from this checkout")
    args = parser.parse_args()
    args.cache.mkdir(exist_ok=True)
    started = time.perf_counter()
    ok = asyncio.run(main_async(args.formats.split(","), args.paths.split(","), args.cache, args.code, args.before))
    print(f"({time.perf_counter() - started:.0f} s)")  # noqa: T201
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
