"""Labelled image datasets: image folders and the bundled ``digits`` set (numpy + PIL only).

``load_dataset("digits", split="train")`` gives scikit-learn's 1,797 bundled handwritten
digits (8x8, 10 classes), upsampled to the model's input size when preprocessed, with a
fixed stratified 80/20 train/validation split (1,438 / 359 images). ``load_dataset(DIR)``
reads a folder with one sub-folder per class (or ``DIR/train`` and ``DIR/val`` folders of
that shape).

Example:
    >>> train = load_dataset("digits", split="train")
    >>> x, y = train.arrays(PreprocessSpec(size=64, resize_mode="warp"))
    >>> x.shape, y.shape
    ((1438, 3, 64, 64), (1438,))
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.data.preprocess import PreprocessSpec, load_image, preprocess_image
from edgevit.errors import DataError, InvalidArgumentError

SPLITS = ("train", "val", "all")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
DIGITS = "digits"
VAL_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass
class ImageDataset:
    """A labelled set of images held as paths or uint8 arrays.

    Attributes:
        name: ``"digits"`` or the folder path.
        classes: class names; label ``i`` is ``classes[i]``.
        items: per image, a path or an HxWx3 uint8 array.
        labels: int64 array of class indices.
    """

    name: str
    classes: tuple[str, ...]
    items: list[Any]
    labels: np.ndarray
    _cache: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray | list[int], name: str | None = None) -> ImageDataset:
        """The images at ``indices`` (same class list)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageDataset(name or self.name, self.classes, [self.items[i] for i in idx], self.labels[idx])

    def with_classes(self, class_indices: list[int]) -> ImageDataset:
        """Only the images of the given classes, relabelled ``0..len(class_indices)-1``."""
        keep = np.isin(self.labels, class_indices)
        remap = {c: i for i, c in enumerate(class_indices)}
        sub = self.subset(np.flatnonzero(keep))
        return ImageDataset(
            f"{self.name}[{','.join(map(str, class_indices))}]",
            tuple(self.classes[c] for c in class_indices),
            sub.items,
            np.array([remap[int(c)] for c in sub.labels], dtype=np.int64),
        )

    def arrays(self, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
        """All images preprocessed to float32 ``[N, 3, S, S]`` (cached per spec) and labels.

        Raises:
            DataError: naming the first file that cannot be decoded.
        """
        key = (spec.size, spec.mean, spec.std, spec.interpolation, spec.crop_pct, spec.resize_mode, spec.layout)
        if key not in self._cache:
            if not self.items:
                raise DataError(f"dataset {self.name!r} is empty")
            self._cache[key] = np.stack([preprocess_image(item, spec) for item in self.items])
        return self._cache[key], self.labels

    def batches(
        self, spec: PreprocessSpec, batch_size: int, shuffle: bool = False, seed: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Preprocessed ``(images, labels)`` batches."""
        x, y = self.arrays(spec)
        order = np.random.default_rng(seed).permutation(len(y)) if shuffle else np.arange(len(y))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]


def load_dataset(source: str | Path, split: str = "all") -> ImageDataset:
    """``"digits"`` or an image folder, for ``split`` ``"train"``, ``"val"`` or ``"all"``.

    A folder either has ``train/`` and ``val/`` sub-folders, each with one sub-folder per
    class, or one sub-folder per class directly (then the same fixed stratified 80/20 split
    as for digits is applied).
    """
    if split not in SPLITS:
        raise InvalidArgumentError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if str(source) == DIGITS:
        data = _digits()
    else:
        root = Path(source)
        if not root.is_dir():
            raise DataError(
                f"dataset {str(source)!r} is neither 'digits' nor an existing folder; pass a folder with "
                "one sub-folder of images per class, or 'digits' for the bundled handwritten digits"
            )
        if (root / "train").is_dir() and (root / "val").is_dir():
            return _read_folder(root / split) if split != "all" else _read_folder(root / "train")
        data = _read_folder(root)
    if split == "all":
        return data
    train_idx, val_idx = stratified_split(data.labels, VAL_FRACTION, SPLIT_SEED)
    chosen = train_idx if split == "train" else val_idx
    if len(chosen) == 0 and len(data.items):
        need = int(np.ceil(0.5 / VAL_FRACTION))  # the fewest images per class that put one in validation
        raise DataError(
            f"the {split} split of {str(source)!r} is empty: {len(data.items)} image(s) in {len(data.classes)} "
            f"class(es), and {VAL_FRACTION:.0%} of each class goes to validation, so a class needs at least "
            f"{need} images to give one; add images, or make train/ and val/ sub-folders (each with one "
            "sub-folder per class)")
    return data.subset(chosen, f"{data.name}:{split}")


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified split: per class, a seeded ``val_fraction`` goes to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = int(round(len(idx) * val_fraction))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


def _digits() -> ImageDataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError("the 'digits' dataset needs scikit-learn: pip install 'edgevit[export]'") from exc
    bunch = load_digits()
    images = (bunch.images / 16.0 * 255.0).round().clip(0, 255).astype(np.uint8)
    rgb = [np.repeat(img[:, :, None], 3, axis=2) for img in images]
    return ImageDataset(DIGITS, tuple(str(c) for c in range(10)), rgb, bunch.target.astype(np.int64))


def _read_folder(root: Path) -> ImageDataset:
    if not root.is_dir():
        raise DataError(f"dataset folder {str(root)!r} does not exist")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"dataset folder {str(root)!r} has no class sub-folders (expected {root}/<class>/<image>)")
    items, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        for path in sorted(class_dir.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                items.append(path)
                labels.append(label)
    if not items:
        raise DataError(
            f"dataset folder {str(root)!r} has no images (looked for {', '.join(IMAGE_SUFFIXES)} in "
            f"{len(class_dirs)} class folders)"
        )
    return ImageDataset(str(root), tuple(p.name for p in class_dirs), items, np.array(labels, dtype=np.int64))


def spec_for_source(spec: PreprocessSpec, source: str | Path, layout: str | None = None) -> PreprocessSpec:
    """``spec`` for the images of ``source`` (``"digits"``, a split name such as ``"digits:val"``, or a
    folder): the 8x8 digits are warped whole to the input size, not centre-cropped. ``layout``, when
    given, replaces the spec's."""
    changes: dict[str, Any] = {}
    if str(source).split(":")[0].split("[")[0] == DIGITS:
        changes.update(crop_pct=1.0, resize_mode="warp")
    if layout is not None:
        changes["layout"] = layout
    return replace(spec, **changes) if changes else spec


#: fewer readable calibration images than this (when more were asked for) are refused, not used
MIN_CALIBRATION = 8


def calibration_images(source: str | Path, count: int, spec: PreprocessSpec, seed: int = 0) -> np.ndarray:
    """``count`` preprocessed images for int8 calibration, drawn from the training split.

    Unreadable files are skipped; an empty or unreadable folder raises :class:`DataError`
    naming it, and so does one with fewer than :data:`MIN_CALIBRATION` readable images when
    more were asked for; fewer images than asked gives a warning with the count used.
    """
    return calibration_draw(source, count, spec, seed=seed)[0]


def calibration_draw(source: str | Path, count: int, spec: PreprocessSpec, held_out: int = 0,
                     seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Calibration images and up to ``held_out`` images calibration did not use, in one pass.

    Calibration takes the first ``count`` readable images in a seeded random order (digits: of
    the training split); the held-out images are the next readable ones of a folder, or, for
    ``digits``, drawn from the validation split. Returns the calibration arrays, the held-out
    images' names and their arrays (``None`` when there are none). Errors and the
    fewer-than-asked warning as in :func:`calibration_images`.
    """
    import warnings

    digits = str(source) == DIGITS
    data = load_dataset(source, split="train") if digits else _calibration_folder(Path(source))
    extra = 0 if digits else held_out
    picked = list(_readable(data, np.random.default_rng(seed).permutation(len(data)), count + extra, spec))
    arrays = [array for _, array in picked[:count]]
    if not arrays:
        raise DataError(f"calibration source {str(source)!r} has no readable images")
    if len(arrays) < min(MIN_CALIBRATION, count):
        raise DataError(
            f"calibration source {str(source)!r} has only {len(arrays)} readable image(s), and activation ranges "
            f"measured on fewer than {MIN_CALIBRATION} say little about the images the model will see (asked "
            f"for {count}); add images like the ones the model will run on, or pass 'digits' for a first try")
    if len(arrays) < count:
        warnings.warn(f"asked for {count} calibration images but {str(source)!r} has only {len(arrays)} "
                      "readable ones; using those", UserWarning, stacklevel=3)
    if digits and held_out:
        data = load_dataset(DIGITS, split="val")
        rest = list(_readable(data, np.random.default_rng(seed).permutation(len(data)), held_out, spec))
        names = [f"digits_val_{i}" for i, _ in rest]
    else:
        rest = picked[count:]
        names = [Path(data.items[i]).name for i, _ in rest]
    return np.stack(arrays), names, (np.stack([array for _, array in rest]) if rest else None)


def _readable(data: ImageDataset, order: np.ndarray, count: int, spec: PreprocessSpec) -> Iterator[tuple[int, np.ndarray]]:
    """The first ``count`` images of ``data`` in ``order`` that decode: ``(index, array)`` pairs."""
    found = 0
    for i in order:
        if found == count:
            return
        try:
            array = preprocess_image(data.items[i], spec)
        except DataError:
            continue
        found += 1
        yield int(i), array


def _calibration_folder(root: Path) -> ImageDataset:
    """A calibration folder may be flat (just images) or have class sub-folders."""
    if not root.is_dir():
        raise DataError(f"calibration folder {str(root)!r} does not exist")
    flat = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if flat:
        return ImageDataset(str(root), ("?",), flat, np.zeros(len(flat), dtype=np.int64))
    try:
        return _read_folder(root)
    except DataError as exc:
        raise DataError(f"calibration folder {str(root)!r} is empty or has no images: {exc}") from exc


__all__ = ["DIGITS", "ImageDataset", "calibration_draw", "calibration_images", "load_dataset", "load_image", "spec_for_source",
           "stratified_split"]
