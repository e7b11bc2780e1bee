"""Input checks shared by every attack and by the routines that feed models test images: a clear
ValueError (or `ModelError`) that says what is wrong, before any graph runs."""

from __future__ import annotations

import keras
import numpy as np

from advcore.attacks.spec import AttackSpec, require
from advcore.models import check_compatible


def check_images(x, clip_min: float = 0.0, clip_max: float = 1.0) -> np.ndarray:
    """A float32 NHWC batch within the valid range, or a ValueError saying what is wrong."""
    x = np.asarray(x)
    if x.dtype == np.uint8 or np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"images are {x.dtype}; AdvLab expects float32 in [0, 1]: "
                         "convert with x.astype('float32') / 255")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"images must be floating point, got {x.dtype}")
    if x.ndim == 4 and len(x) == 0:
        raise ValueError("the batch holds no images")
    if x.ndim != 4:
        raise ValueError(f"images must be a batch of shape (N, H, W, C), got shape {x.shape}"
                         + (" (for one image use x[None])" if x.ndim == 3 else ""))
    if not np.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    if x.size and (x.min() < clip_min - 1e-6 or x.max() > clip_max + 1e-6):
        raise ValueError(f"image values must lie in [{clip_min}, {clip_max}], found "
                         f"[{x.min():g}, {x.max():g}]" + (" (divide 0..255 images by 255)" if x.max() > 1.5 else ""))
    return x.astype(np.float32, copy=False)


def check_budget(eps: float, norm: str, input_shape, clip_min: float = 0.0, clip_max: float = 1.0) -> None:
    """A budget that can still leave images unreachable, or a ValueError saying why not: beyond the
    largest distance inside the [clip_min, clip_max] box every image is reachable."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps:g}")
    span = clip_max - clip_min
    largest = span if norm == "linf" else span * float(np.prod(input_shape)) ** 0.5
    if eps > largest:
        raise ValueError(f"eps {eps:g} is larger than the whole [{clip_min:g}, {clip_max:g}] image range allows "
                         f"in {norm} ({largest:.3g}): every image would be reachable")


def check_labels(labels, count: int, num_classes: int, what: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (count,):
        hint = " (pass class indices, not one-hot vectors)" if labels.ndim == 2 else ""
        raise ValueError(f"{what} must have shape ({count},), one class index per image, "
                         f"got shape {labels.shape}{hint}")
    if count and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what} must be integer class indices, got {labels.dtype}")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def checked_batch(model: keras.Model, x, labels, what: str = "labels", clip_min: float = 0.0,
                  clip_max: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Images the model takes, in range, and one class index of the model per image."""
    x = check_images(x, clip_min, clip_max)
    num_classes = int(model.outputs[0].shape[-1])
    check_compatible(model, x.shape[1:], num_classes)
    return x, check_labels(labels, len(x), num_classes, what)


def checked_inputs(model: keras.Model, x, y, spec: AttackSpec, target=None) -> tuple[np.ndarray, np.ndarray]:
    """The images, and the labels the attack works with (true labels or targets), after every check."""
    if not isinstance(spec, AttackSpec):
        raise TypeError(f"spec must be an AttackSpec, got {type(spec).__name__}")
    x, y = checked_batch(model, x, y, "labels", spec.clip_min, spec.clip_max)
    check_budget(spec.eps, spec.norm, x.shape[1:], spec.clip_min, spec.clip_max)
    num_classes = int(model.outputs[0].shape[-1])
    if spec.target == "targeted":
        require(target is not None, "a targeted attack needs target classes (target=...)")
        return x, check_labels(np.broadcast_to(target, y.shape) if np.ndim(target) == 0 else target,
                               len(y), num_classes, "target")
    require(target is None, f"target classes were given but the attack is {spec.target!r}; "
            "use target='targeted'")
    return x, y
