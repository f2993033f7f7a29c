"""Datasets: the built-in digits, or an image folder in the study's train/test layout.

Every image file is decoded once; the arrays for each image size are cached on disk, keyed by a
fingerprint of the files, so a later sweep starts without touching the images again. The arrays are
compact uint8 (N, S, S, 3); trials receive them once through Ray's object store.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from sklearn.model_selection import train_test_split

from scenetune.atomic import replaced_when_written, write_text
from scenetune.errors import UserError

BUILTIN_DIGITS = "digits"
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
MAX_LISTED_PATHS = 10
# Bump when decoding or resizing changes, so caches made by older code are never used.
DECODER_VERSION = "1"
CACHE_ENV_VAR = "SCENETUNE_CACHE"


@dataclass(frozen=True)
class ImageFile:
    path: Path
    label: int


@dataclass(frozen=True)
class FolderListing:
    root: Path
    classes: list[str]
    train: list[ImageFile]
    test: list[ImageFile]


@dataclass
class Split:
    """Images (N, S, S, 3) uint8 and integer labels (N,)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    """A dataset decoded at one or more image sizes: the train and test folders, per size."""

    source: str
    fingerprint: str
    classes: list[str]
    train: dict[int, Split]
    test: dict[int, Split]
    skipped_images: list[str] = field(default_factory=list)
    listing: FolderListing | None = None  # an image folder's files; None for digits

    def matches(self, recorded: str) -> bool:
        """Whether a recorded fingerprint names these files; earlier versions recorded sizes and
        modification times, which a resume on the untouched folder still accepts."""
        if recorded == self.fingerprint:
            return True
        return self.listing is not None and recorded == stat_fingerprint(self.listing)


@dataclass
class TrialData:
    """What a trial receives: train / val / test splits per image size."""

    classes: list[str]
    splits: dict[int, dict[str, Split]]

    def at_size(self, image_size: int) -> dict[str, Split]:
        if image_size not in self.splits:
            raise ValueError(
                f"image_size {image_size} was not prepared for this sweep (prepared: {sorted(self.splits)})"
            )
        return self.splits[image_size]

    def split_sizes(self) -> dict[str, int]:
        """How many images each split holds (the same at every image size)."""
        return {name: len(split) for name, split in next(iter(self.splits.values())).items()}


def default_cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scenetune"


def _format_paths(paths: list[str]) -> str:
    shown = ", ".join(paths[:MAX_LISTED_PATHS])
    more = len(paths) - MAX_LISTED_PATHS
    return shown + (f" and {more} more" if more > 0 else "")


def _is_image_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def _class_folders(split_dir: Path) -> list[Path]:
    return sorted(
        (p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def list_image_folder(root: Path) -> FolderListing:
    """Check the layout root/{train,test}/<class>/<image> and list its images, classes sorted by name."""
    if not root.exists():
        raise UserError(f"dataset directory {root} does not exist")
    if not root.is_dir():
        raise UserError(f"dataset path {root} is not a directory")
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise UserError(
                f"{root} has no {split}/ folder; expected the layout "
                f"{root}/train/<class>/<image> and {root}/test/<class>/<image>"
            )
    train_folders = _class_folders(root / "train")
    if not train_folders:
        raise UserError(f"{root / 'train'} holds no class folders")
    classes = [p.name for p in train_folders]
    label_of = {name: i for i, name in enumerate(classes)}
    files: dict[str, list[ImageFile]] = {"train": [], "test": []}
    for split in ("train", "test"):
        for folder in _class_folders(root / split):
            if folder.name not in label_of:
                raise UserError(f"test class folder {folder} has no counterpart in {root / 'train'}")
            images = sorted(p for p in folder.iterdir() if _is_image_file(p))
            if not images:
                raise UserError(f"class folder {folder} holds no images")
            files[split].extend(ImageFile(p, label_of[folder.name]) for p in images)
    if not files["test"]:
        raise UserError(f"{root / 'test'} holds no class folders")
    return FolderListing(root, classes, files["train"], files["test"])


def folder_fingerprint(listing: FolderListing, cache_dir: Path | None = None) -> str:
    """Changes when any image is added, removed, renamed or its bytes change. A copy of the folder
    (another place, new modification times) keeps it, so its caches and experiments carry over."""
    digest = hashlib.sha256(f"folder-content-v{DECODER_VERSION}\n".encode())
    for split, images in (("train", listing.train), ("test", listing.test)):
        contents = file_digests(
            [image.path for image in images], _digest_memo(cache_dir, listing.root, split)
        )
        for image, content in zip(images, contents, strict=True):
            relative = image.path.relative_to(listing.root).as_posix()
            digest.update(f"{split}\t{relative}\t{content}\n".encode())
    return digest.hexdigest()[:20]


def stat_fingerprint(listing: FolderListing) -> str:
    """The fingerprint of earlier versions (sizes and modification times): experiments that recorded
    it can still be resumed on the same, untouched folder."""
    digest = hashlib.sha256(f"folder-v{DECODER_VERSION}\n".encode())
    for split, images in (("train", listing.train), ("test", listing.test)):
        for image in images:
            stat = image.path.stat()
            relative = image.path.relative_to(listing.root).as_posix()
            digest.update(f"{split}\t{relative}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _digest_memo(cache_dir: Path | None, root: Path, split: str) -> Path | None:
    if cache_dir is None:
        return None
    return cache_dir / f"digests-{hashlib.sha256(str(root).encode()).hexdigest()[:16]}-{split}.json"


def file_digests(paths: list[Path], memo: Path | None = None) -> list[str]:
    """Each file's SHA-256. A file whose size and modification time match the memo's is not read
    again, so only the first sweep on a folder, or on a copy of it, reads every image."""
    known: dict[str, list] = {}
    if memo is not None:
        try:
            known = json.loads(memo.read_text())
        except (OSError, ValueError):
            known = {}  # missing or damaged: every file is read
    current: dict[str, list] = {}
    for path in paths:
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = known.get(str(path))
        if entry is None or entry[:2] != stamp:
            entry = [*stamp, hashlib.sha256(path.read_bytes()).hexdigest()[:32]]
        current[str(path)] = entry
    if memo is not None and current != known:
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_text(memo, json.dumps(current))
    return [current[str(path)][2] for path in paths]


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    # 16- and 32-bit grayscale: convert("L") would clip everything above 255 to white.
    values = np.asarray(image, dtype=np.float64)
    peak = 65535.0 if values.max(initial=0) > 255 else 255.0
    return Image.fromarray(np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as upright RGB: EXIF orientation applied, alpha composited on white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _to_8bit_gray(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def decode_image(path: Path) -> Image.Image:
    with Image.open(path) as opened:
        opened.load()
        return to_rgb(opened)


def resize_rgb(image: Image.Image, size: int) -> np.ndarray:
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def load_images(paths: Iterable[Path], size: int) -> np.ndarray:
    """Decode image files (any format PIL reads) to one (N, size, size, 3) uint8 array."""
    return np.stack([resize_rgb(decode_image(Path(p)), size) for p in paths])


def _decode_folder(
    listing: FolderListing, sizes: list[int], skip_bad_images: bool
) -> tuple[dict[int, Split], dict[int, Split], list[str]]:
    """Decode each image once and resize it to every requested size."""
    arrays: dict[str, dict[int, list[np.ndarray]]] = {"train": {}, "test": {}}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    bad: list[str] = []
    for split, images in (("train", listing.train), ("test", listing.test)):
        per_size = arrays[split]
        for size in sizes:
            per_size[size] = []
        for image in images:
            try:
                decoded = decode_image(image.path)
            except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError):
                bad.append(str(image.path))
                continue
            for size in sizes:
                per_size[size].append(resize_rgb(decoded, size))
            labels[split].append(image.label)
    if bad and not skip_bad_images:
        raise UserError(
            f"{len(bad)} image(s) cannot be read: {_format_paths(bad)}; "
            "fix or remove them, or pass --skip-bad-images"
        )
    for split in ("train", "test"):
        if not labels[split]:
            raise UserError(f"no readable images are left in {listing.root / split}")
    empty = sorted(set(range(len(listing.classes))) - set(labels["train"]))
    if empty:
        folder = listing.root / "train" / listing.classes[empty[0]]
        raise UserError(
            f"class folder {folder} has no readable image left after skipping the bad ones; a class needs training images"
        )
    result = {
        split: {
            size: Split(np.stack(arrays[split][size]), np.asarray(labels[split], dtype=np.int64))
            for size in sizes
        }
        for split in ("train", "test")
    }
    return result["train"], result["test"], bad


def _cache_path(cache_dir: Path, fingerprint: str, size: int) -> Path:
    return cache_dir / f"{fingerprint}-{size}px.npz"


def _read_cache(path: Path) -> tuple[Split, Split, list[str]] | None:
    try:
        with np.load(path, allow_pickle=False) as saved:
            skipped = json.loads(str(saved["skipped"]))
            return (
                Split(saved["x_train"], saved["y_train"]),
                Split(saved["x_test"], saved["y_test"]),
                skipped,
            )
    except (OSError, KeyError, ValueError):
        return None  # missing or damaged: rebuilt from the images


def _write_cache(path: Path, train: Split, test: Split, skipped: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_when_written(path, suffix=".npz") as partial:  # a reader never sees half a cache file
        np.savez(
            partial,
            x_train=train.x,
            y_train=train.y,
            x_test=test.x,
            y_test=test.y,
            skipped=np.asarray(json.dumps(skipped)),
        )


def _load_folder(root: Path, sizes: list[int], cache_dir: Path, skip_bad_images: bool) -> Dataset:
    listing = list_image_folder(root)
    fingerprint = folder_fingerprint(listing, cache_dir)
    train: dict[int, Split] = {}
    test: dict[int, Split] = {}
    skipped: list[str] = []
    missing: list[int] = []
    for size in sizes:
        cached = _read_cache(_cache_path(cache_dir, fingerprint, size))
        if cached is None:
            missing.append(size)
            continue
        train[size], test[size], skipped = cached
    if skipped and not skip_bad_images:
        raise UserError(
            f"{len(skipped)} image(s) cannot be read: {_format_paths(skipped)}; "
            "fix or remove them, or pass --skip-bad-images"
        )
    if missing:
        new_train, new_test, skipped = _decode_folder(listing, missing, skip_bad_images)
        for size in missing:
            train[size], test[size] = new_train[size], new_test[size]
            _write_cache(_cache_path(cache_dir, fingerprint, size), train[size], test[size], skipped)
    if skipped:
        print(
            f"scenetune: warning: skipped {len(skipped)} unreadable image(s): {_format_paths(skipped)}",
            file=sys.stderr,
        )
    return Dataset(str(root), fingerprint, listing.classes, train, test, skipped, listing)


def _load_digits(sizes: list[int]) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    gray = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    # A fixed split, independent of --seed, so every digits result is measured on the same test set.
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=0
    )

    def at_size(indices: np.ndarray, size: int) -> Split:
        images = [resize_rgb(Image.fromarray(gray[i], "L").convert("RGB"), size) for i in indices]
        return Split(np.stack(images), labels[indices])

    return Dataset(
        source=BUILTIN_DIGITS,
        fingerprint=f"digits-v{DECODER_VERSION}",
        classes=[str(d) for d in digits.target_names],
        train={size: at_size(train_idx, size) for size in sizes},
        test={size: at_size(test_idx, size) for size in sizes},
    )


def check_data_source(source: str) -> FolderListing | None:
    """Validate --data before anything else runs; returns the folder listing, None for digits."""
    if source == BUILTIN_DIGITS:
        return None
    return list_image_folder(Path(source).expanduser())


DIGITS_CLASS_COUNT = 10


def class_count(source: str) -> int:
    """How many classes --data has, from its layout alone (checked, nothing decoded)."""
    listing = check_data_source(source)
    return DIGITS_CLASS_COUNT if listing is None else len(listing.classes)


def load_dataset(
    source: str,
    image_sizes: Iterable[int],
    cache_dir: Path | None = None,
    skip_bad_images: bool = False,
) -> Dataset:
    """Load `digits` or an image folder at each of the given image sizes."""
    sizes = sorted(set(int(s) for s in image_sizes))
    if not sizes or min(sizes) < 1:
        raise UserError(f"image sizes must be positive integers, got {sizes}")
    if source == BUILTIN_DIGITS:
        return _load_digits(sizes)
    root = Path(source).expanduser().resolve()
    return _load_folder(root, sizes, cache_dir or default_cache_dir(), skip_bad_images)


def _check_classes_can_be_split(dataset: Dataset, labels: np.ndarray) -> None:
    """A stratified validation split puts each class on both sides, so each needs two training images."""
    counts = np.bincount(labels, minlength=len(dataset.classes))
    if counts.min() < 2:
        name = dataset.classes[int(counts.argmin())]
        where = f" ({Path(dataset.source) / 'train' / name})" if dataset.source != BUILTIN_DIGITS else ""
        raise UserError(
            f"class {name!r} has {int(counts.min())} training image(s){where}; carving a stratified validation "
            "set needs at least 2 per class: add images, or pass --val test"
        )


def make_trial_data(dataset: Dataset, val_fraction: float, val_from_test: bool, seed: int) -> TrialData:
    """Carve validation from train (stratified, seeded), or use the test folder as validation."""
    if not val_from_test and not 0.0 < val_fraction < 1.0:
        raise UserError(f"--val-fraction must lie strictly between 0 and 1, got {val_fraction}")
    any_size = next(iter(dataset.train))
    labels = dataset.train[any_size].y
    if val_from_test:
        train_idx = np.arange(len(labels))
        val_idx = None
    else:
        _check_classes_can_be_split(dataset, labels)
        n_classes = len(np.unique(labels))
        n_val = int(round(val_fraction * len(labels)))
        if n_val < n_classes or len(labels) - n_val < n_classes:
            raise UserError(
                f"--val-fraction {val_fraction} leaves too few images for a stratified split of "
                f"{len(labels)} training images in {n_classes} classes"
            )
        train_idx, val_idx = train_test_split(
            np.arange(len(labels)), test_size=n_val, stratify=labels, random_state=seed
        )
        train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    splits: dict[int, dict[str, Split]] = {}
    for size, full_train in dataset.train.items():
        test = dataset.test[size]
        train = Split(full_train.x[train_idx], full_train.y[train_idx])
        val = test if val_idx is None else Split(full_train.x[val_idx], full_train.y[val_idx])
        splits[size] = {"train": train, "val": val, "test": test}
    return TrialData(dataset.classes, splits)
