"""Still images: stylize JPEG, PNG and WebP files (or folders of them) with the same engines as videos.

EXIF orientation is applied before stylizing (the output is stored upright, without the tag), an alpha
channel is kept (the RGB is stylized, the alpha reattached unchanged), the ICC profile and the other EXIF
fields are copied. With ``compare`` the output holds the original and the cartoon side by side (one above
the other for portrait pictures, see :mod:`vidtoon.compare`). Outputs are written to a temporary file in the
destination folder and renamed, so an output file only ever appears complete.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidtoon.errors import VidtoonError
from vidtoon.fileio import AtomicFile, check_creatable

#: extensions picked up when a folder is given (explicit files are read by content, whatever their name)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
#: output extension -> Pillow format; any other input format is written as PNG
WRITE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
#: appended to the stem of an output name; folder scans skip such files so a re-run does not stylize outputs
SUFFIX = "_toon"
#: the same for the before/after outputs of ``compare``
COMPARE_SUFFIX = "_compare"


@dataclass(frozen=True)
class ImageJob:
    """One image to stylize and where its result goes."""

    input: Path
    output: Path


@dataclass
class ImageResult:
    """What happened to one :class:`ImageJob`."""

    job: ImageJob
    ok: bool
    size: tuple[int, int] = (0, 0)  # output (width, height)
    seconds: float = 0.0
    error: str = ""
    warnings: list[str] = field(default_factory=list)


def _require_pillow() -> Any:
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:  # pragma: no cover - Pillow is an install requirement
        raise VidtoonError("vidtoon image needs Pillow (pip install Pillow)") from exc
    return Image, ImageOps


def output_name(path: Path, compare: bool = False) -> str:
    """``photo.jpg`` -> ``photo_toon.jpg``, or ``photo_compare.jpg`` for ``compare`` (formats Pillow cannot
    write as given become ``.png``)."""
    ext = path.suffix if path.suffix.lower() in WRITE_FORMATS else ".png"
    return f"{path.stem}{COMPARE_SUFFIX if compare else SUFFIX}{ext}"


def _scan(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(
        p for p in found
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
        and not p.stem.endswith((SUFFIX, COMPARE_SUFFIX))
    )


def plan_jobs(inputs: Sequence[str | Path], output: str | Path | None = None, recursive: bool = False,
              compare: bool = False) -> list[ImageJob]:
    """Turn the command line's inputs (files and folders) and ``-o`` into jobs.

    One file and ``-o`` that is not an existing folder: ``-o`` is the output file. Otherwise ``-o`` is a
    folder (created when missing); images found in a folder keep their path relative to it. Without
    ``-o`` every output is written next to its input as ``<stem>_toon.<ext>`` (``_compare`` for ``compare``).
    """
    if not inputs:
        raise VidtoonError("no input images given")
    paths = [Path(p).expanduser() for p in inputs]
    for p in paths:
        if not p.exists():
            raise VidtoonError(f"input {p} does not exist")
    out = Path(output).expanduser() if output is not None else None
    single_file = len(paths) == 1 and paths[0].is_file()
    if out is not None and single_file and not out.is_dir() and not str(output).endswith(os.sep):
        if out.suffix.lower() not in WRITE_FORMATS:
            raise VidtoonError(f"cannot write {out.name}: use a .jpg, .png or .webp name (or an existing folder)")
        return [ImageJob(paths[0], out)]
    if out is not None and out.exists() and not out.is_dir():
        raise VidtoonError(f"-o {out} is a file; with several images -o must be a folder")
    if out is not None and not out.exists() and out.suffix.lower() in WRITE_FORMATS:
        # several images into what reads as one file's name: not made into a folder of that name
        raise VidtoonError(f"-o {out} names an image file; with several images -o must be a folder")
    if out is not None:
        check_creatable(out)  # before any image is stylized

    jobs: list[ImageJob] = []
    for p in paths:
        if p.is_dir():
            found = _scan(p, recursive)
            for f in found:
                dest_dir = (out / f.parent.relative_to(p)) if out is not None else f.parent
                jobs.append(ImageJob(f, dest_dir / output_name(f, compare)))
        else:
            jobs.append(ImageJob(p, (out if out is not None else p.parent) / output_name(p, compare)))
    if not jobs:
        where = ", ".join(str(p) for p in paths)
        raise VidtoonError(f"no .jpg, .png or .webp images found in {where}" + ("" if recursive else " (use --recursive for subfolders)"))
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.output in seen:
            raise VidtoonError(f"{seen[job.output]} and {job.input} would both be written to {job.output}")
        seen[job.output] = job.input
    return jobs


def _is_video(path: str | Path) -> bool:
    """Whether ``path`` is a video by its content, as ``batch`` decides (for the error that points it to
    ``convert``)."""
    from vidtoon.batch_find import probe_file

    return probe_file(Path(path)).kind == "video"


def load_image(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Read an image upright: returns (H x W x 3 uint8 RGB, H x W uint8 alpha or None, metadata).

    The metadata dict holds ``format`` (Pillow's name), ``icc_profile`` and ``exif`` (orientation
    removed, since the pixels are now upright) when the file has them.
    """
    Image, ImageOps = _require_pillow()
    try:
        with Image.open(path) as im:
            fmt = im.format
            im.load()
            im = ImageOps.exif_transpose(im)  # applies and drops the orientation tag
    except Image.UnidentifiedImageError:
        if _is_video(path):
            raise VidtoonError(f"{path} is a video, not an image (use vidtoon convert {path})") from None
        raise VidtoonError(f"cannot read {path}: not an image (JPEG, PNG, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise VidtoonError(f"cannot read {path} as an image: {exc}") from exc
    meta: dict[str, Any] = {"format": fmt}
    if im.info.get("icc_profile"):
        meta["icc_profile"] = im.info["icc_profile"]
    exif = im.getexif()
    if len(exif):
        meta["exif"] = exif.tobytes()

    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale to 8 bits ourselves (Pillow's convert("L") clips instead of scaling)
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), None, meta
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info) \
        or (im.mode in ("L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        return rgba[..., :3].copy(), rgba[..., 3].copy(), meta
    return np.array(im.convert("RGB")), None, meta


def fit_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is at most ``max_side`` (never up); None keeps it."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def stylize_array(engine: Any, rgb: np.ndarray, alpha: np.ndarray | None = None,
                  max_side: int | None = None, compare: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Stylize one RGB picture with ``engine`` (an :class:`vidtoon.engines.base.Engine`), resizing first if asked.

    The alpha channel, when given, is resized the same way and returned unchanged otherwise. ``compare``
    returns the (resized) original and the cartoon side by side, or one above the other when portrait
    (``max_side`` applies to each half); the alpha channel is then doubled the same way.
    """
    import cv2

    h, w = rgb.shape[:2]
    nw, nh = fit_size(w, h, max_side)
    if (nw, nh) != (w, h):
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        if alpha is not None:
            alpha = cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_AREA)
    out = engine.infer(np.ascontiguousarray(rgb)[None])[0]
    if compare:
        from vidtoon.compare import layout_for

        layout = layout_for(nw, nh)  # pictures are already upright (EXIF orientation applied)
        out = layout.join(rgb, out)
        alpha = layout.join(alpha, alpha) if alpha is not None else None
    return out, alpha


def save_image(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None,
               meta: dict[str, Any] | None = None, quality: int = 95) -> list[str]:
    """Write ``rgb`` (+ ``alpha``) to ``path`` atomically, format chosen by the extension.

    Returns warnings (e.g. alpha flattened onto white for JPEG, which has no alpha channel).
    """
    Image, _ = _require_pillow()
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise VidtoonError(f"cannot write {path.name}: use a .jpg, .png or .webp name")
    meta = meta or {}
    warnings: list[str] = []
    if alpha is not None and fmt == "JPEG":
        # JPEG cannot hold alpha: composite onto white rather than letting hidden colours show through
        a = alpha[..., None].astype(np.float32) / 255.0
        rgb = (rgb.astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)
        alpha = None
        warnings.append("JPEG has no alpha channel: transparent areas were flattened onto white")
    im = Image.fromarray(np.dstack([rgb, alpha]) if alpha is not None else rgb, "RGBA" if alpha is not None else "RGB")
    kwargs: dict[str, Any] = {}
    if meta.get("icc_profile"):
        kwargs["icc_profile"] = meta["icc_profile"]
    if meta.get("exif"):
        kwargs["exif"] = meta["exif"]
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    if fmt == "PNG":
        kwargs["optimize"] = False
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name opened exclusively (mkstemp would make the file private, 0600, ignoring the umask)
    with AtomicFile(path) as target, open(target.path, "xb") as fh:
        im.save(fh, format=fmt, **kwargs)
    return warnings


def stylize_file(engine: Any, job: ImageJob, max_side: int | None = None, overwrite: bool = False,
                 quality: int = 95, compare: bool = False) -> ImageResult:
    """Stylize one image file into ``job.output``; errors become a failed :class:`ImageResult`."""
    import time

    t0 = time.perf_counter()
    try:
        if job.output.resolve() == job.input.resolve():
            raise VidtoonError("the output would replace the input")
        if job.output.exists() and not overwrite:
            raise VidtoonError(f"{job.output} exists (use --overwrite)")
        rgb, alpha, meta = load_image(job.input)
        out, alpha = stylize_array(engine, rgb, alpha, max_side, compare)
        warnings = save_image(job.output, out, alpha, meta, quality)
    except VidtoonError as exc:
        return ImageResult(job, False, error=str(exc), seconds=time.perf_counter() - t0)
    except OSError as exc:  # unwritable folder, disk full
        return ImageResult(job, False, error=f"cannot write {job.output}: {exc.strerror or exc}",
                           seconds=time.perf_counter() - t0)
    return ImageResult(job, True, size=(out.shape[1], out.shape[0]), seconds=time.perf_counter() - t0,
                       warnings=warnings)


def stylize_files(engine: Any, jobs: Iterable[ImageJob], max_side: int | None = None, overwrite: bool = False,
                  quality: int = 95, on_result: Callable[[ImageResult], None] | None = None,
                  compare: bool = False) -> list[ImageResult]:
    """Stylize every job in turn with one engine; a bad file is reported in its result, the rest go on."""
    results = []
    for job in jobs:
        result = stylize_file(engine, job, max_side, overwrite, quality, compare)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
