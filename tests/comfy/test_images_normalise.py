"""What ComfyUI gets: the upload as it is when LoadImage reads it right, else an upright 8-bit RGB JPEG
without metadata."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from comfy.images import ImageTooLarge, UnsupportedImage, normalise_for_comfy, prepare_for_comfy
from tests.fixtures import images as samples

RED, GREEN, BLUE, WHITE = samples.QUADRANTS
JPEG_TOLERANCE = 12  # lossy codecs move colours a little, far less than any colour difference we check


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data), formats=["JPEG"])
    image.load()
    return image


def close_to(actual: object, expected: tuple[int, ...], tolerance: int = JPEG_TOLERANCE) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(samples.jpeg_bytes(64, 48), id="jpeg"),
        pytest.param(samples.mpo_bytes(64, 48), id="mpo"),
        pytest.param(samples.png_bytes(64, 48), id="png"),
        pytest.param(samples.webp_bytes(64, 48), id="webp"),
        pytest.param(samples.webp_bytes(64, 48, lossless=True, mode="RGBA"), id="webp-alpha"),
        pytest.param(samples.heic_bytes(64, 48), id="heic"),
    ],
)
def test_accepted_formats_become_an_rgb_jpeg_of_the_same_picture(data: bytes) -> None:
    image = decode(normalise_for_comfy(data))
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 48))
    assert close_to(image.getpixel((8, 8)), RED)
    assert close_to(image.getpixel((56, 40)), WHITE)


def test_output_has_no_metadata() -> None:
    source = samples.encode(
        samples.quadrants(),
        "PNG",
        pnginfo=samples.png_info({"Comment": "scanned 1962"}),
        dpi=(300, 300),
        exif=Image.Exif().tobytes(),
        icc_profile=b"not really a profile",
    )
    image = decode(normalise_for_comfy(source))
    assert not image.getexif()
    assert "icc_profile" not in image.info
    assert "dpi" not in image.info


def test_jpeg_exif_is_not_carried_over() -> None:
    output = normalise_for_comfy(samples.jpeg_bytes(exif_orientation=3))
    assert not decode(output).getexif()


def test_cmyk_jpeg_becomes_rgb() -> None:
    image = decode(normalise_for_comfy(samples.jpeg_bytes(mode="CMYK")))
    assert image.mode == "RGB"
    assert close_to(image.getpixel((8, 8)), RED)


def test_16_bit_grey_png_is_scaled_to_8_bits_not_clipped() -> None:
    image = decode(normalise_for_comfy(samples.png_bytes(mode="I;16", colour=32768)))
    assert image.mode == "RGB"
    assert close_to(image.getpixel((0, 0)), (127, 127, 127), tolerance=1)


def test_exif_orientation_6_swaps_width_and_height() -> None:
    image = decode(normalise_for_comfy(samples.jpeg_bytes(64, 48, exif_orientation=6)))
    assert image.size == (48, 64)


def test_exif_orientation_6_turns_the_picture_clockwise() -> None:
    image = decode(normalise_for_comfy(samples.jpeg_bytes(64, 48, exif_orientation=6)))
    # Turning clockwise brings the bottom-left (blue) quadrant to the top-left.
    assert close_to(image.getpixel((4, 4)), BLUE)
    assert close_to(image.getpixel((44, 4)), RED)


def test_transparent_pixels_become_white() -> None:
    image = decode(normalise_for_comfy(samples.png_bytes(mode="RGBA", colour=(255, 0, 0, 0))))
    assert close_to(image.getpixel((0, 0)), WHITE, tolerance=1)


def test_half_transparent_pixels_are_blended_on_white() -> None:
    image = decode(normalise_for_comfy(samples.png_bytes(mode="RGBA", colour=(255, 0, 0, 128))))
    assert close_to(image.getpixel((0, 0)), (255, 127, 127), tolerance=2)


def test_grey_with_alpha_is_blended_on_white() -> None:
    image = decode(normalise_for_comfy(samples.png_bytes(mode="LA", colour=(0, 0))))
    assert close_to(image.getpixel((0, 0)), WHITE, tolerance=1)


def test_palette_transparency_becomes_white() -> None:
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0])
    palette.paste(1, (16, 16, 32, 32))
    data = samples.encode(palette, "PNG", transparency=0)
    image = decode(normalise_for_comfy(data))
    assert close_to(image.getpixel((4, 4)), WHITE)
    assert close_to(image.getpixel((24, 24)), GREEN)


def test_non_image_data_is_unsupported() -> None:
    with pytest.raises(UnsupportedImage):
        normalise_for_comfy(b"<html></html>")


def test_truncated_image_is_unsupported() -> None:
    with pytest.raises(UnsupportedImage):
        normalise_for_comfy(samples.truncated(samples.jpeg_bytes()))


def test_pixel_bomb_is_too_large() -> None:
    with pytest.raises(ImageTooLarge):
        normalise_for_comfy(samples.png_bomb())


@pytest.mark.parametrize(
    ("data", "extension"),
    [
        pytest.param(samples.jpeg_bytes(64, 48), "jpg", id="jpeg"),
        pytest.param(samples.jpeg_bytes(64, 48, mode="L"), "jpg", id="grey-jpeg"),
        pytest.param(samples.png_bytes(64, 48), "png", id="png"),
        pytest.param(samples.webp_bytes(64, 48), "webp", id="webp"),
    ],
)
def test_what_comfyui_reads_as_it_is_goes_unchanged(data: bytes, extension: str) -> None:
    prepared = prepare_for_comfy(data)
    assert (prepared.data, prepared.extension, prepared.converted) == (data, extension, False)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(samples.heic_bytes(64, 48), id="heic"),
        pytest.param(samples.mpo_bytes(64, 48), id="mpo"),
        pytest.param(samples.jpeg_bytes(64, 48, exif_orientation=6), id="rotated"),
        pytest.param(samples.jpeg_bytes(64, 48, mode="CMYK"), id="cmyk"),
        pytest.param(samples.png_bytes(mode="I;16", colour=32768), id="16-bit"),
        pytest.param(samples.png_bytes(mode="RGBA", colour=(255, 0, 0, 128)), id="alpha"),
        pytest.param(
            samples.encode(Image.new("RGBA", (64, 48), (255, 0, 0, 100)), "WEBP", lossless=True), id="webp-alpha"
        ),
    ],
)
def test_what_comfyui_would_misread_is_normalised(data: bytes) -> None:
    prepared = prepare_for_comfy(data)
    assert (prepared.extension, prepared.converted) == ("jpg", True)
    assert prepared.data == normalise_for_comfy(data)
