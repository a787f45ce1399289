"""CPU stand-ins for the node functions: cheap Pillow work instead of models.

Loaders return placeholders, images are ``PIL.Image`` objects, a latent is the (8-aligned) image
itself, and the KSampler applies a light classical restoration whose strength follows ``denoise``.
Pillow work runs in a thread so the event loop keeps answering HTTP and websocket traffic (fact 27).
"""

import asyncio
import io
import json
import math
import random
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, ImageFilter, ImageOps
from PIL.PngImagePlugin import PngInfo

from comfy.emulator.files import Folders, save_image_path

Outputs = tuple[Any, ...]
UI = dict[str, Any]

_RESAMPLE = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class ModelHandle:
    """A loaded model, clip or vae: just its name."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"<emulated {self.kind} {self.name}>"


@dataclass(frozen=True)
class Latent:
    """A latent: the pixels themselves, cropped to multiples of 8."""

    image: Image.Image

    def __str__(self) -> str:
        return f"<emulated LATENT {self.image.width // 8}x{self.image.height // 8}>"


@dataclass(frozen=True)
class Conditioning:
    text: str
    guidance: float | None = None
    reference: Latent | None = None
    zero: bool = False

    def __str__(self) -> str:
        return f"<emulated CONDITIONING {self.text[:40]!r}>"


class NodeContext(Protocol):
    """What a running node may ask of the executor."""

    folders: Folders
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    service_time: float
    hang: bool

    def check_interrupt(self) -> None: ...

    async def progress(self, value: int, total: int, preview: bytes | None) -> None: ...

    def wants_preview(self) -> bool: ...


def _image(value: Any) -> Image.Image:
    if isinstance(value, Latent):
        return value.image
    if not isinstance(value, Image.Image):
        raise TypeError(f"expected an image, got {type(value).__name__}")
    return value


async def load_checkpoint(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    name = str(i["ckpt_name"])
    return (ModelHandle("MODEL", name), ModelHandle("CLIP", name), ModelHandle("VAE", name)), None


async def load_unet(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    return (ModelHandle("MODEL", str(i["unet_name"])),), None


async def load_dual_clip(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    return (ModelHandle("CLIP", f"{i['clip_name1']}+{i['clip_name2']}"),), None


async def load_vae(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    return (ModelHandle("VAE", str(i["vae_name"])),), None


def _open_image(path: Path) -> tuple[Image.Image, Image.Image]:
    with Image.open(path) as opened:
        img = ImageOps.exif_transpose(opened)
        img.load()
    if "A" in img.getbands():
        mask = ImageOps.invert(img.getchannel("A"))
    else:
        mask = Image.new("L", (64, 64), 0)
    return img.convert("RGB"), mask


async def load_image(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    image, mask = await asyncio.to_thread(_open_image, ctx.folders.annotated(str(i["image"])))
    return (image, mask), None


def scale_to_total_pixels(image: Image.Image, method: str, megapixels: float) -> Image.Image:
    """ComfyUI's ImageScaleToTotalPixels sizing: ``megapixels`` x 1024 x 1024 pixels, aspect kept."""
    if method not in _RESAMPLE:
        raise NotImplementedError(
            "Input Error: Only 3D, 4D and 5D input Tensors supported (got 4D) for the modes: nearest | linear | "
            f"bilinear | bicubic | trilinear | lanczos | area | nearest-exact (got {method})"
        )
    total = int(megapixels * 1024 * 1024)
    scale = math.sqrt(total / (image.width * image.height))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, _RESAMPLE[method])


async def image_scale_to_total_pixels(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    image = _image(i["image"])
    scaled = await asyncio.to_thread(scale_to_total_pixels, image, str(i["upscale_method"]), float(i["megapixels"]))
    return (scaled,), None


def _scale(image: Image.Image, method: str, width: int, height: int, crop: str) -> Image.Image:
    if width == 0 and height == 0:
        return image
    if width == 0:
        width = max(1, round(image.width * height / image.height))
    if height == 0:
        height = max(1, round(image.height * width / image.width))
    if crop == "center":
        return ImageOps.fit(image, (width, height), _RESAMPLE[method])
    return image.resize((width, height), _RESAMPLE[method])


async def image_scale(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    args = (_image(i["image"]), str(i["upscale_method"]), int(i["width"]), int(i["height"]), str(i["crop"]))
    return (await asyncio.to_thread(_scale, *args),), None


async def image_sharpen(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    unsharp = ImageFilter.UnsharpMask(radius=float(i["sigma"]), percent=int(float(i["alpha"]) * 100), threshold=0)
    return (await asyncio.to_thread(_image(i["image"]).filter, unsharp),), None


async def image_blur(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    blur = ImageFilter.GaussianBlur(radius=float(i["sigma"]))
    return (await asyncio.to_thread(_image(i["image"]).filter, blur),), None


def crop_to_multiple_of_8(image: Image.Image) -> Image.Image:
    """The VAE's encode crop: centred, down to multiples of 8 (296x222 -> 296x216)."""
    width, height = (image.width // 8) * 8, (image.height // 8) * 8
    if (width, height) == image.size:
        return image
    left, top = (image.width % 8) // 2, (image.height % 8) // 2
    return image.crop((left, top, left + width, top + height))


async def vae_encode(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    return (Latent(await asyncio.to_thread(crop_to_multiple_of_8, _image(i["pixels"]))),), None


async def vae_decode(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    return (_image(i["samples"]).copy(),), None


async def clip_text_encode(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    return (Conditioning(text=str(i["text"])),), None


def _conditioning(value: Any) -> Conditioning:
    if not isinstance(value, Conditioning):
        raise TypeError(f"expected CONDITIONING, got {type(value).__name__}")
    return value


async def reference_latent(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    cond = _conditioning(i["conditioning"])
    latent = i.get("latent")
    reference = latent if isinstance(latent, Latent) else cond.reference
    return (Conditioning(cond.text, cond.guidance, reference, cond.zero),), None


async def flux_guidance(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    cond = _conditioning(i["conditioning"])
    return (Conditioning(cond.text, float(i["guidance"]), cond.reference, cond.zero),), None


async def conditioning_zero_out(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    cond = _conditioning(i["conditioning"])
    return (Conditioning(cond.text, cond.guidance, cond.reference, zero=True),), None


def restore(image: Image.Image, denoise: float) -> Image.Image:
    """A light classical restoration: denoise by ``denoise``, then gentle autocontrast and sharpening."""
    if denoise <= 0:
        return image.copy()
    cleaned = image.filter(ImageFilter.MedianFilter(3))
    out = Image.blend(image, cleaned, min(1.0, denoise))
    out = Image.blend(out, ImageOps.autocontrast(out, cutoff=1), 0.5 * denoise)
    return out.filter(ImageFilter.UnsharpMask(radius=2, percent=int(40 + 60 * denoise), threshold=3))


def jpeg_preview(image: Image.Image, size: int = 256) -> bytes:
    """A small JPEG like the latent2rgb previews."""
    thumb = image.copy()
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


async def ksampler(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    """``steps`` steps spread over ``service_time``; interrupts take effect at the next step (fact 19)."""
    steps = int(i["steps"])
    image = _image(i["latent_image"])
    work = asyncio.ensure_future(asyncio.to_thread(restore, image, float(i["denoise"])))
    try:
        preview = await asyncio.to_thread(jpeg_preview, image) if ctx.wants_preview() else None
        per_step = ctx.service_time / steps
        for step in range(1, steps + 1):
            if ctx.hang and step == steps:
                while True:
                    await asyncio.sleep(max(per_step, 0.02))
                    ctx.check_interrupt()
            await asyncio.sleep(per_step)
            await ctx.progress(step, steps, preview)
        return (Latent(await work),), None
    finally:
        if not work.done():
            work.add_done_callback(lambda task: task.exception())


def _save_png(
    folders: Folders, image: Image.Image, prefix: str, kind: str, prompt: dict[str, Any], extra: dict[str, Any]
) -> UI:
    base = folders.output if kind == "output" else folders.temp
    folder, basename, counter, subfolder = save_image_path(base, prefix, image.width, image.height)
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    for key, value in extra.get("extra_pnginfo", {}).items() if isinstance(extra.get("extra_pnginfo"), dict) else ():
        info.add_text(str(key), json.dumps(value))
    filename = f"{basename}_{counter:05}_.png"
    image.save(folder / filename, pnginfo=info, compress_level=4 if kind == "output" else 1)
    return {"images": [{"filename": filename, "subfolder": subfolder, "type": kind}]}


async def save_image(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    args = (ctx.folders, _image(i["images"]), str(i["filename_prefix"]), "output", ctx.prompt, ctx.extra_data)
    return (), await asyncio.to_thread(_save_png, *args)


async def preview_image(ctx: NodeContext, i: dict[str, Any]) -> tuple[Outputs, UI | None]:
    suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    args = (ctx.folders, _image(i["images"]), f"ComfyUI_temp_{suffix}", "temp", ctx.prompt, ctx.extra_data)
    return (), await asyncio.to_thread(_save_png, *args)


NodeFunction = Callable[[NodeContext, dict[str, Any]], Awaitable[tuple[Outputs, UI | None]]]

NODE_FUNCTIONS: dict[str, NodeFunction] = {
    "CheckpointLoaderSimple": load_checkpoint,
    "UNETLoader": load_unet,
    "DualCLIPLoader": load_dual_clip,
    "VAELoader": load_vae,
    "LoadImage": load_image,
    "ImageScaleToTotalPixels": image_scale_to_total_pixels,
    "ImageScale": image_scale,
    "ImageSharpen": image_sharpen,
    "ImageBlur": image_blur,
    "VAEEncode": vae_encode,
    "VAEDecode": vae_decode,
    "CLIPTextEncode": clip_text_encode,
    "ReferenceLatent": reference_latent,
    "FluxGuidance": flux_guidance,
    "ConditioningZeroOut": conditioning_zero_out,
    "KSampler": ksampler,
    "SaveImage": save_image,
    "PreviewImage": preview_image,
}


def noise_png(min_bytes: int = (1 << 20) + 1) -> bytes:
    """A PNG of random pixels larger than ``min_bytes`` (random data does not compress)."""
    side = math.ceil(math.sqrt(min_bytes / 3)) + 16
    image = Image.frombytes("RGB", (side, side), random.randbytes(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
