"""The streamed WebP proof (gql.webp_proof through inspect_image): it accepts and refuses exactly
what Pillow's full decode does, without Pillow holding the file or the full-size picture."""

from __future__ import annotations

import io
import random
import struct
import tempfile

import pytest
from PIL import Image

from comfy.images import ImageRejected, ImageTooLarge, UnsupportedImage
from gql import webp_proof
from gql.intake import ImageInfo, inspect_image
from tests.fixtures import images as samples

MAX_PIXELS = 150_000_000
MUTATIONS_PER_SEED = 300

pytestmark = [
    pytest.mark.skipif(not webp_proof.available(), reason="no libwebp to load"),
    # The oracle opens damaged headers that claim huge canvases; Pillow warns before refusing them.
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]


def one_frame_animation(w: int = 64, h: int = 48) -> bytes:
    """An animation container (VP8X + ANIM) holding a single ANMF frame: Pillow writes a still
    WebP for one frame, so this drops the second frame of a two-frame animation."""
    data = samples.animated_webp_bytes(frames=2, w=w, h=h)
    second = data.index(b"ANMF", data.index(b"ANMF") + 4)
    size = struct.unpack_from("<I", data, second + 4)[0]
    kept = bytearray(data[:second] + data[second + 8 + size + (size & 1) :])
    struct.pack_into("<I", kept, 4, len(kept) - 8)
    return bytes(kept)


SEEDS = {
    "lossy": samples.webp_bytes(96, 64),
    "lossless": samples.webp_bytes(96, 64, lossless=True),
    "alpha": samples.webp_bytes(96, 64, mode="RGBA"),
    "alpha-lossless": samples.webp_bytes(96, 64, lossless=True, mode="RGBA"),
    "one-frame-animation": one_frame_animation(),
}


def accepted(data: bytes) -> bool | None:
    """Whether the upload is accepted; None when refused for its pixel count (413), which is the
    header's claim and no verdict on whether it decodes."""
    try:
        inspect_image(io.BytesIO(data), max_pixels=MAX_PIXELS)
    except ImageTooLarge:
        return None
    except ImageRejected:
        return False
    return True


def pillow_accepts(data: bytes) -> bool:
    """The oracle: Pillow opens the file as a still WebP and decodes it at full size."""
    try:
        with Image.open(io.BytesIO(data), formats=["WEBP"]) as image:
            if getattr(image, "n_frames", 1) > 1:
                return False
            image.load()
    except Exception:
        return False
    return True


@pytest.mark.parametrize("name", SEEDS)
def test_damaged_webp_gets_the_verdict_of_a_full_decode(name: str) -> None:
    rng = random.Random(name)
    disagreements = [
        data.hex()
        for data in samples.damaged(SEEDS[name], rng, MUTATIONS_PER_SEED)
        if (verdict := accepted(data)) is not None and verdict != pillow_accepts(data)
    ]
    assert disagreements == []


def test_one_frame_animation_is_accepted_with_its_canvas_size() -> None:
    data = one_frame_animation(64, 48)
    assert pillow_accepts(data)
    assert inspect_image(io.BytesIO(data), max_pixels=MAX_PIXELS) == ImageInfo("webp", "webp", "image/webp", 64, 48)


def test_container_claiming_more_bytes_than_the_file_is_refused() -> None:
    data = bytearray(samples.webp_bytes())
    struct.pack_into("<I", data, 4, len(data))  # 8 bytes more than there are
    with pytest.raises(UnsupportedImage, match="truncated"):
        inspect_image(io.BytesIO(bytes(data)), max_pixels=MAX_PIXELS)


def test_webp_of_too_many_chunks_is_refused() -> None:
    data = samples.webp_bytes()
    padding = b"XTRA" + struct.pack("<I", 0)
    stuffed = bytearray(data + padding * webp_proof.MAX_CHUNKS)
    struct.pack_into("<I", stuffed, 4, len(stuffed) - 8)
    with pytest.raises(UnsupportedImage, match="chunks"):
        inspect_image(io.BytesIO(bytes(stuffed)), max_pixels=MAX_PIXELS)


def test_webp_with_a_few_unknown_chunks_is_accepted() -> None:
    data = samples.webp_bytes()
    stuffed = bytearray(data + (b"XTRA" + struct.pack("<I", 2) + b"hi") * 3)
    struct.pack_into("<I", stuffed, 4, len(stuffed) - 8)
    assert pillow_accepts(bytes(stuffed))
    assert inspect_image(io.BytesIO(bytes(stuffed)), max_pixels=MAX_PIXELS).format == "webp"


def test_one_frame_animation_with_a_truncated_frame_is_refused() -> None:
    data = one_frame_animation(64, 64)
    frame = data.index(b"ANMF")
    cut = bytearray(data[: len(data) - 6])
    struct.pack_into("<I", cut, 4, len(cut) - 8)  # a consistent container around a short frame
    struct.pack_into("<I", cut, frame + 4, len(cut) - frame - 8)
    assert not pillow_accepts(bytes(cut))
    with pytest.raises(UnsupportedImage):
        inspect_image(io.BytesIO(bytes(cut)), max_pixels=MAX_PIXELS)


def test_frame_outside_its_canvas_is_refused() -> None:
    data = bytearray(one_frame_animation())
    frame = data.index(b"ANMF")
    data[frame + 8 : frame + 11] = (8).to_bytes(3, "little")  # x offset 16 px: 16 + 64 > 64
    with pytest.raises(UnsupportedImage):
        inspect_image(io.BytesIO(bytes(data)), max_pixels=MAX_PIXELS)


def large_lossless_webp() -> bytes:
    """Noise compresses badly: a lossless WebP of about 5 MB, past the size that is mapped."""
    width, height = 1300, 1300
    image = Image.frombytes("RGB", (width, height), random.Random(1).randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, "WEBP", lossless=True, method=0, quality=0)
    data = out.getvalue()
    assert len(data) > 4 * 1024 * 1024
    return data


@pytest.fixture(scope="module")
def large_webp() -> bytes:
    return large_lossless_webp()


def on_disk(data: bytes) -> io.BufferedRandom:
    spool = tempfile.TemporaryFile()
    spool.write(data)
    spool.seek(0)
    return spool  # type: ignore[return-value]


def test_large_webp_on_disk_is_accepted(large_webp: bytes) -> None:
    with on_disk(large_webp) as spool:
        assert inspect_image(spool, max_pixels=MAX_PIXELS) == ImageInfo("webp", "webp", "image/webp", 1300, 1300)


@pytest.mark.parametrize("keep", [0.5, 0.99], ids=["half", "all-but-the-end"])
def test_large_truncated_webp_on_disk_is_refused(large_webp: bytes, keep: float) -> None:
    data = bytearray(large_webp[: int(len(large_webp) * keep)])
    struct.pack_into("<I", data, 4, len(data) - 8)  # the container agrees; the bitstream is short
    with on_disk(bytes(data)) as spool, pytest.raises(UnsupportedImage):
        inspect_image(spool, max_pixels=MAX_PIXELS)


def test_large_webp_on_disk_corrupt_near_its_end_is_refused(large_webp: bytes) -> None:
    data = bytearray(large_webp)
    end = len(data) - 64
    data[end - 4096 : end] = random.Random(2).randbytes(4096)
    verdict = pillow_accepts(bytes(data))
    with on_disk(bytes(data)) as spool:
        try:
            inspect_image(spool, max_pixels=MAX_PIXELS)
        except UnsupportedImage:
            assert not verdict
        else:
            assert verdict
