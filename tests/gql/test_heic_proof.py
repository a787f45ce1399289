"""The bounded HEIC proof (gql.heic_proof through inspect_image): it accepts and refuses exactly
what pillow-heif's full decode does, reading the file through libheif's streaming reader and
decoding a grid image one tile at a time."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from comfy.images import ImageRejected, ImageTooLarge, UnsupportedImage, open_image
from gql import heic_proof, libheif
from gql.intake import ImageInfo, inspect_image
from tests.fixtures import images as samples

MAX_PIXELS = 150_000_000
MUTATIONS_PER_SEED = 300

pytestmark = [
    pytest.mark.skipif(not heic_proof.available(), reason="no libheif with tile decoding to load"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]


def grid_heic(w: int = 1100, h: int = 700, *, mode: str = "RGB", brand: bytes = b"heic") -> bytes:
    """A grid of 512x512 HEVC tiles, as phones write (the last row and column cropped)."""
    data = samples.encode(samples.quadrants(w, h).convert(mode), "HEIF", quality=50, tile_size=512)
    return data[:8] + brand + data[12:]


SEEDS = {
    "single": samples.heic_bytes(96, 64),
    "single-heif-brand": samples.heic_bytes(128, 64, brand=b"mif1"),
    "single-alpha": samples.encode(samples.quadrants(64, 64).convert("RGBA"), "HEIF", quality=80),
    "grid": grid_heic(),
    "grid-grey": grid_heic(600, 520, mode="L"),
}


def accepted(data: bytes) -> bool | None:
    """Whether the upload is accepted; None when refused for its pixel count (413)."""
    try:
        inspect_image(io.BytesIO(data), max_pixels=MAX_PIXELS)
    except ImageTooLarge:
        return None
    except ImageRejected:
        return False
    return True


def pillow_heif_accepts(data: bytes) -> bool:
    """The oracle: pillow-heif opens the file as a still HEIF and decodes it in full."""
    try:
        with open_image(io.BytesIO(data)) as image:
            if image.format != "HEIF" or getattr(image, "n_frames", 1) > 1:
                return False
            image.load()
    except Exception:
        return False
    return True


@pytest.mark.parametrize("name", SEEDS)
def test_damaged_heic_gets_the_verdict_of_a_full_decode(name: str) -> None:
    rng = random.Random(name)
    disagreements = [
        data.hex()
        for data in samples.damaged(SEEDS[name], rng, MUTATIONS_PER_SEED)
        if (verdict := accepted(data)) is not None and verdict != pillow_heif_accepts(data)
    ]
    assert disagreements == []


@pytest.mark.parametrize("name", SEEDS)
def test_valid_seed_is_proven_by_libheif(name: str) -> None:
    _, verdict = heic_proof.prove_heic(io.BytesIO(SEEDS[name]), max_pixels=MAX_PIXELS)
    assert verdict is heic_proof.Verdict.PROVEN


def test_grid_heic_is_accepted_with_its_size() -> None:
    assert inspect_image(io.BytesIO(grid_heic(1100, 700)), max_pixels=MAX_PIXELS) == ImageInfo(
        "heic", "heic", "image/heic", 1100, 700
    )


def test_grid_heif_brand_is_named_heif() -> None:
    info = inspect_image(io.BytesIO(grid_heic(brand=b"mif1")), max_pixels=MAX_PIXELS)
    assert (info.extension, info.content_type) == ("heif", "image/heif")


def test_grid_over_the_pixel_limit_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLarge):
        inspect_image(io.BytesIO(grid_heic(1100, 700)), max_pixels=1100 * 700 - 1)


def test_grid_in_which_no_tile_decodes_is_refused() -> None:
    data = bytearray(grid_heic())
    mdat = data.index(b"mdat") + 4
    data[mdat:] = random.Random(3).randbytes(len(data) - mdat)
    assert not pillow_heif_accepts(bytes(data))
    with pytest.raises(UnsupportedImage):
        inspect_image(io.BytesIO(bytes(data)), max_pixels=MAX_PIXELS)


def test_grid_missing_its_last_tile_is_accepted_as_by_the_full_decode() -> None:
    """libheif's full grid decode (non-strict, as pillow-heif runs it) leaves a hole where a tile
    after the first cannot be read; the proof gives the same verdict."""
    data = grid_heic()[:-40]  # the last tile's data runs past the end of the file
    assert pillow_heif_accepts(data)
    assert inspect_image(io.BytesIO(data), max_pixels=MAX_PIXELS).format == "heic"


def test_large_single_image_is_left_to_the_full_decode() -> None:
    side = int(heic_proof.WHOLE_DECODE_PIXELS**0.5) + 64
    data = samples.heic_bytes(side, side, quality=30)
    image, verdict = heic_proof.prove_heic(io.BytesIO(data), max_pixels=MAX_PIXELS)
    assert (image, verdict) == (heic_proof.HeifImage(side, side), heic_proof.Verdict.NOT_PROVEN)
    assert inspect_image(io.BytesIO(data), max_pixels=MAX_PIXELS) == ImageInfo("heic", "heic", "image/heic", side, side)


def test_two_image_heic_is_refused() -> None:
    first, second = samples.quadrants(64, 48), Image.new("RGB", (64, 48))
    data = samples.encode(first, "HEIF", save_all=True, append_images=[second])
    with pytest.raises(UnsupportedImage, match="multi-image"):
        inspect_image(io.BytesIO(data), max_pixels=MAX_PIXELS)


class _LibraryWithoutTiles:
    """A libheif too old for the proof: it lacks the grid-tile lookup."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __getattr__(self, name: str) -> object:
        if name == "heif_image_handle_get_grid_image_tile_id":
            raise AttributeError(name)
        return type("Function", (), {})()


def test_library_missing_a_function_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libheif.ctypes, "CDLL", _LibraryWithoutTiles)
    assert libheif.library.__wrapped__() is None


@pytest.mark.parametrize("data", [grid_heic(), samples.heic_bytes(96, 64)], ids=["grid", "single"])
def test_without_libheif_pillow_heif_judges(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(heic_proof, "available", lambda: False)
    monkeypatch.setattr(heic_proof, "prove_heic", None)  # would fail if it were still called
    assert inspect_image(io.BytesIO(data), max_pixels=MAX_PIXELS).format == "heic"
    with pytest.raises(UnsupportedImage):
        inspect_image(io.BytesIO(data[: len(data) // 3]), max_pixels=MAX_PIXELS)
