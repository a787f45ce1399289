"""The input/output/temp folders and ComfyUI's rules for naming, uploading and serving files in them."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

_ANNOTATIONS = {"[output]": "output", "[input]": "input", "[temp]": "temp"}


class UploadRejected(Exception):
    """The upload cannot be stored (ComfyUI answers 400 with an empty body)."""


@dataclass(frozen=True)
class Folders:
    """ComfyUI's three file folders under one root."""

    root: Path

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def temp(self) -> Path:
        return self.root / "temp"

    def create(self) -> None:
        for folder in (self.input, self.output, self.temp):
            folder.mkdir(parents=True, exist_ok=True)

    def by_type(self, kind: str | None) -> Path | None:
        return {"input": self.input, "output": self.output, "temp": self.temp}.get(kind or "input")

    def annotated(self, name: str) -> Path:
        """Where ``LoadImage.image`` points: relative to input, unless suffixed ``[output]``/``[temp]``."""
        base = self.input
        for suffix, kind in _ANNOTATIONS.items():
            if name.endswith(suffix):
                name = name[: -len(suffix)].rstrip()
                base = self.by_type(kind) or self.input
                break
        return Path(os.path.join(base, name))

    def input_files(self) -> list[str]:
        """Top-level files of the input folder (what ComfyUI offers in LoadImage's combo)."""
        if not self.input.is_dir():
            return []
        return sorted(p.name for p in self.input.iterdir() if p.is_file())


def _inside(base: Path, path: str) -> bool:
    base_abs = os.path.abspath(base)
    return os.path.commonpath((base_abs, os.path.abspath(path))) == base_abs


def store_upload(folders: Folders, kind: str, filename: str, content: bytes, subfolder: str, overwrite: bool) -> str:
    """Save an uploaded file like ``POST /upload/image`` does and return the name it was stored under.

    Without ``overwrite``, an existing file with identical bytes is reused and a different one makes
    the new file ``name (1).ext`` (then ``(2)``, ...).
    """
    base = folders.by_type(kind)
    if base is None or not filename:
        raise UploadRejected(filename)
    full_folder = os.path.join(base, os.path.normpath(subfolder))
    filepath = os.path.abspath(os.path.join(full_folder, filename))
    if not _inside(base, filepath):
        raise UploadRejected(filename)
    os.makedirs(full_folder, exist_ok=True)
    stem, ext = os.path.splitext(filename)
    if not overwrite:
        i = 1
        while os.path.exists(filepath):
            if _sha256_file(filepath) == hashlib.sha256(content).hexdigest():
                return filename
            filename = f"{stem} ({i}){ext}"
            filepath = os.path.join(full_folder, filename)
            i += 1
    with open(filepath, "wb") as f:
        f.write(content)
    return filename


def _sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    """Content hash used as LoadImage's IS_CHANGED (the cache key of the loaded image)."""
    try:
        return _sha256_file(path)
    except OSError:
        return "missing"


def resolve_view(folders: Folders, filename: str, subfolder: str | None, kind: str) -> Path | int:
    """The file ``GET /view`` serves, or the HTTP status ComfyUI answers instead (400/403/404)."""
    base: Path | None = None
    for suffix, annotated_kind in _ANNOTATIONS.items():
        if filename.endswith(suffix):
            filename = filename[: -len(suffix)].rstrip()
            base = folders.by_type(annotated_kind)
            break
    if not filename or filename[0] == "/" or ".." in filename:
        return 400
    if base is None:
        base = folders.by_type(kind)
    if base is None:
        return 400
    folder = str(base)
    if subfolder is not None:
        folder = os.path.join(base, subfolder)
        if not _inside(base, folder):
            return 403
    path = Path(folder) / os.path.basename(filename)
    return path if path.is_file() else 404


def save_image_path(output_dir: Path, filename_prefix: str, width: int, height: int) -> tuple[Path, str, int, str]:
    """ComfyUI's ``get_save_image_path``: (folder, basename, next counter, subfolder) for a prefix.

    The counter continues from the highest ``<basename>_NNNNN_`` file already in the folder.
    """
    if "%" in filename_prefix:
        filename_prefix = filename_prefix.replace("%width%", str(width)).replace("%height%", str(height))
    normalized = os.path.normpath(filename_prefix)
    subfolder = os.path.dirname(normalized)
    basename = os.path.basename(normalized)
    full_folder = os.path.join(output_dir, subfolder)
    if not _inside(output_dir, full_folder):
        raise ValueError(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {os.path.abspath(full_folder)}"
            f"\n         output_dir: {output_dir}"
            f"\n         commonpath: {os.path.commonpath((str(output_dir), os.path.abspath(full_folder)))}"
        )
    counter = 1
    if os.path.isdir(full_folder):
        prefix_len = len(basename)
        for name in os.listdir(full_folder):
            head, rest = name[: prefix_len + 1], name[prefix_len + 1 :]
            if os.path.normcase(head[:-1]) != os.path.normcase(basename) or head[-1:] != "_":
                continue
            try:
                digits = int(rest.split("_")[0])
            except ValueError:
                digits = 0
            counter = max(counter, digits + 1)
    else:
        os.makedirs(full_folder, exist_ok=True)
    return Path(full_folder), basename, counter, subfolder
