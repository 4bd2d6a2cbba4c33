"""Tasks from a folder of images with one sub-folder per class.

::

    my_data/
        cats/  001.png  002.jpg ...
        dogs/  a.jpeg  b.webp ...

Class names are the sub-folder names (sorted); hidden entries (starting with ``.``) and files of
other types are ignored. Every image is decoded with Pillow (first frame of animations), converted
to RGB or grayscale, and resized to ``image_size`` x ``image_size`` (aspect ratio is not kept).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nasflow.errors import ConfigError, DataError
from nasflow.tasks.base import Task
from nasflow.tasks.split import make_task

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MODES = ("auto", "rgb", "grayscale")
#: Pillow modes that hold a single intensity channel (optionally with alpha)
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def _visible(entry: Path) -> bool:
    return not entry.name.startswith(".")


def _class_files(root: Path) -> tuple[list[str], list[list[Path]]]:
    folders = sorted((p for p in root.iterdir() if p.is_dir() and _visible(p)), key=lambda p: p.name)
    if not folders:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES][:3]
        hint = f" (it holds images such as {loose} directly)" if loose else ""
        raise DataError(
            f"image folder {str(root)!r} has no class sub-folders{hint}; put the images of each class "
            "in their own sub-folder, e.g. data/cats/*.png and data/dogs/*.png"
        )
    files = []
    for folder in folders:
        images = sorted(
            p for p in folder.iterdir() if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            raise DataError(
                f"class folder {str(folder)!r} contains no images; allowed file types: "
                f"{', '.join(IMAGE_SUFFIXES)}"
            )
        files.append(images)
    return [f.name for f in folders], files


def _read_image(path: Path, size: int) -> tuple[np.ndarray, bool]:
    """``(H, W, 3)`` uint8 pixels and whether the file is grayscale."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            gray = image.mode in _GRAY_MODES
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                # high-bit-depth gray would be clipped by convert("RGB"); rescale to 8 bits first
                values = np.asarray(image, dtype=np.float64)
                top = values.max()
                values = values / top * 255.0 if top > 0 else values
                image = Image.fromarray(values.clip(0, 255).astype(np.uint8), mode="L")  # type: ignore[assignment]
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8), gray
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {str(path)!r}: {exc}") from None


def load_image_folder(
    path: str | os.PathLike[str],
    image_size: int = 32,
    mode: str = "auto",
    split_seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> Task:
    """A :class:`Task` from a folder with one sub-folder of images per class.

    Args:
        path: the folder; the task is named after it.
        image_size: side length images are resized to.
        mode: ``"rgb"`` (3 channels), ``"grayscale"`` (1 channel) or ``"auto"``: grayscale when every
            image is stored as grayscale, else RGB.
        split_seed, val_fraction, test_fraction: the stratified split (see ``stratified_split``).
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
    mode = mode.lower() if isinstance(mode, str) else mode
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} does not exist")

    class_names, files = _class_files(root)
    pixels, labels, all_gray = [], [], True
    for label, class_files in enumerate(files):
        for file in class_files:
            image, gray = _read_image(file, image_size)
            pixels.append(image)
            labels.append(label)
            all_gray = all_gray and gray

    images = np.stack(pixels).transpose(0, 3, 1, 2)  # (N, 3, H, W)
    if mode == "grayscale" or (mode == "auto" and all_gray):
        if all_gray:
            images = images[:, :1]  # gray images were expanded to three equal channels
        else:  # ITU-R 601 luma, the weights Pillow's own RGB -> L conversion uses
            weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)[None, :, None, None]
            images = (images * weights).sum(axis=1, keepdims=True)
    images = images.astype(np.float32) / 255.0
    return make_task(
        root.resolve().name or "images",
        images,
        np.asarray(labels, dtype=np.int64),
        class_names,
        split_seed,
        val_fraction,
        test_fraction,
    )
