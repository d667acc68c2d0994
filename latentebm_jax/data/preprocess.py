"""Host-side image preprocessing in NumPy/PIL: crops, resizing, channel handling, scaling to ``[−1, 1]``."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Crop boxes as (top, left, height, width) on the source image.
CROPS = {
    "none": None,
    # LEBM's `celeba_crop`: rows 45..172, columns 25..152 of the 218×178 aligned CelebA image.
    "celeba_lebm": (45, 25, 128, 128),
    # BiDVL's CenterCrop(160) on 218×178 CelebA.
    "center160": ((218 - 160) // 2, (178 - 160) // 2, 160, 160),
}

RESIZE_METHODS = ("bilinear", "pad")


def crop(image: np.ndarray, name: str) -> np.ndarray:
    """Apply the named crop box (``CROPS``) to an HWC image."""
    if name not in CROPS:
        raise ValueError(f"unknown crop {name!r}; allowed: {sorted(CROPS)}")
    box = CROPS[name]
    if box is None:
        return image
    top, left, h, w = box
    if image.shape[0] < top + h or image.shape[1] < left + w:
        raise ValueError(f"crop {name!r} needs an image of at least {top + h}×{left + w}, got {image.shape}")
    return image[top : top + h, left : left + w]


def resize(image: np.ndarray, size: int, method: str = "bilinear") -> np.ndarray:
    """Resize an HWC uint8 image to ``size×size``: PIL bilinear (antialiased when shrinking, like
    torchvision's ``Resize``) or ``pad`` (centre on a black canvas; MNIST 28 → 32)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    if method == "pad":
        if h > size or w > size:
            raise ValueError(f"cannot pad a {h}×{w} image to {size}×{size}")
        out = np.zeros((size, size, image.shape[2]), image.dtype)
        top, left = (size - h) // 2, (size - w) // 2
        out[top : top + h, left : left + w] = image
        return out
    if method != "bilinear":
        raise ValueError(f"unknown resize method {method!r}; allowed: {RESIZE_METHODS}")
    squeeze = image.shape[2] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(pil.resize((size, size), Image.BILINEAR))
    return out[..., None] if squeeze else out


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Replicate a grey image to ``channels``; refuse to drop colour silently."""
    c = image.shape[2]
    if c == channels:
        return image
    if c == 1:
        return np.repeat(image, channels, axis=2)
    raise ValueError(f"dataset images have {c} channels but data.channels={channels}")


def to_model_range(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 ``[0, 255]`` to float32 ``[−1, 1]``."""
    return images_uint8.astype(np.float32) / 127.5 - 1.0


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float ``[−1, 1]`` to uint8 ``[0, 255]`` (clipped)."""
    return np.clip(np.round((np.asarray(images) + 1.0) * 127.5), 0, 255).astype(np.uint8)
