"""strip_png_metadata: ComfyUI's embedded workflow never reaches users; the pixels are untouched."""

from __future__ import annotations

import io
import json
import zlib

import pytest
from PIL import Image

from comfy.images import UnsupportedImage, strip_png_metadata
from tests.fixtures import images as samples

WORKFLOW = json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 42, "denoise": 0.5}}})


def comfy_output() -> bytes:
    """A PNG as ComfyUI's SaveImage writes it: the prompt and workflow in tEXt chunks."""
    return samples.png_bytes(text_chunks={"prompt": WORKFLOW, "workflow": WORKFLOW})


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    image = Image.open(io.BytesIO(data), formats=["PNG"])
    return image.mode, image.size, image.tobytes()


def test_removes_the_prompt_text_chunk() -> None:
    stripped = strip_png_metadata(comfy_output())
    assert b"tEXt" not in samples.png_chunk_types(stripped)
    assert b"KSampler" not in stripped
    assert "prompt" not in Image.open(io.BytesIO(stripped)).info


def test_keeps_the_pixels_identical() -> None:
    original = comfy_output()
    assert pixels(strip_png_metadata(original)) == pixels(original)


def test_does_not_re_encode_the_image_data() -> None:
    original = comfy_output()
    assert samples.png_chunk_types(strip_png_metadata(original)) == [b"IHDR", b"IDAT", b"IEND"]
    assert strip_png_metadata(original) == samples.png_bytes()


@pytest.mark.parametrize(
    "chunk",
    [
        pytest.param(samples.png_chunk(b"zTXt", b"prompt\x00\x00" + zlib.compress(WORKFLOW.encode())), id="zTXt"),
        pytest.param(samples.png_chunk(b"iTXt", b"workflow\x00\x00\x00\x00\x00" + WORKFLOW.encode()), id="iTXt"),
        pytest.param(samples.png_chunk(b"eXIf", Image.Exif().tobytes()), id="eXIf"),
        pytest.param(samples.png_chunk(b"tIME", bytes.fromhex("07e80102030405")), id="tIME"),
        pytest.param(samples.png_chunk(b"prVt", b"private ancillary data"), id="unknown-ancillary"),
    ],
)
def test_removes_other_metadata_chunks(chunk: bytes) -> None:
    data = samples.insert_png_chunks(samples.png_bytes(), chunk)
    assert samples.png_chunk_types(strip_png_metadata(data)) == [b"IHDR", b"IDAT", b"IEND"]


def test_keeps_colour_chunks() -> None:
    colour = [
        samples.png_chunk(b"gAMA", (45455).to_bytes(4, "big")),
        samples.png_chunk(b"sRGB", b"\x00"),
        samples.png_chunk(b"pHYs", (11811).to_bytes(4, "big") * 2 + b"\x01"),
    ]
    data = samples.insert_png_chunks(comfy_output(), *colour)
    kept = samples.png_chunk_types(strip_png_metadata(data))
    assert kept == [b"IHDR", b"gAMA", b"sRGB", b"pHYs", b"IDAT", b"IEND"]


def test_keeps_palette_and_transparency() -> None:
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0])
    data = samples.encode(palette, "PNG", transparency=0, pnginfo=samples.png_info({"prompt": WORKFLOW}))
    stripped = strip_png_metadata(data)
    assert samples.png_chunk_types(stripped) == [b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"]
    assert pixels(stripped) == pixels(data)


def test_drops_bytes_after_the_end_chunk() -> None:
    assert strip_png_metadata(samples.png_bytes() + b"trailing") == samples.png_bytes()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(samples.jpeg_bytes(), id="jpeg"),
        pytest.param(samples.webp_bytes(), id="webp"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="signature-only"),
    ],
)
def test_refuses_what_is_not_a_png(data: bytes) -> None:
    with pytest.raises(UnsupportedImage):
        strip_png_metadata(data)


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_refuses_a_truncated_png(keep: float) -> None:
    with pytest.raises(UnsupportedImage):
        strip_png_metadata(samples.truncated(comfy_output(), keep))


def test_refuses_a_chunk_with_a_bad_checksum() -> None:
    data = bytearray(comfy_output())
    data[-13] ^= 0xFF  # last byte of the IDAT chunk's CRC, just before the 12-byte IEND chunk
    with pytest.raises(UnsupportedImage, match="checksum"):
        strip_png_metadata(bytes(data))


def test_refuses_a_png_that_does_not_start_with_its_header() -> None:
    data = samples.png_bytes()
    signature, header, rest = data[:8], data[8:33], data[33:]
    with pytest.raises(UnsupportedImage, match="header"):
        strip_png_metadata(signature + samples.png_chunk(b"tEXt", b"a\x00b") + header + rest)


def test_refuses_a_png_without_image_data() -> None:
    data = samples.png_bytes()
    with pytest.raises(UnsupportedImage, match="no image data"):
        strip_png_metadata(data[:33] + samples.png_chunk(b"IEND", b""))
