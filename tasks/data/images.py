"""Image stores: in-memory arrays (generated data, MedMNIST) and files on disk (everything else).

`read_image` is the single place a file becomes pixels, so every adapter gets the same handling of
grayscale, 16-bit, palette, RGBA and CMYK images and of EXIF rotation, and the same errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from tasks.data.errors import DataError, ImageReadError


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) -> (H, W, 3) uint8; grayscale is replicated to 3 channels."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {array.dtype}")
    return np.ascontiguousarray(array)


def read_image(path: Path) -> np.ndarray:
    """Decode `path` to an (H, W, 3) uint8 RGB array, or raise ImageReadError saying why."""
    # Another library (or a user's notebook) may have set PIL's process-wide
    # LOAD_TRUNCATED_IMAGES, which makes a truncated file decode silently with a grey/black tail.
    # Force strict decoding for our read and restore the flag afterwards.
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not as a half-black image
            img = ImageOps.exif_transpose(img)  # phone and camera JPEGs store rotation in EXIF
            return np.asarray(_to_rgb(img, path))
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            path, f"image too large to decode safely ({exc})", "downscale the file, or raise PIL.Image.MAX_IMAGE_PIXELS"
        ) from exc
    except FileNotFoundError as exc:
        raise ImageReadError(path, "file does not exist", "check the dataset root and the index/CSV entry") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not an image file PIL can read", "remove it from the dataset folder") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(
            path, f"corrupt or truncated image ({exc})", "re-download or re-export the file, or delete it"
        ) from exc
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit grayscale (common for X-ray PNGs): scale the full range to 8 bits rather than
        # letting PIL clip everything above 255 to white.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.round().astype(np.uint8), "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "PA":  # palette + alpha (rare PNGs): expand the palette, keep the alpha
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        # Composite on black: medical images are dark-background, and keeping the colour of
        # transparent pixels (often arbitrary) would leak editor artefacts into training.
        background = Image.new("RGB", img.size, (0, 0, 0))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").split()[-1])
        return background
    if img.mode in ("RGB", "L", "CMYK", "YCbCr", "1"):
        return img.convert("RGB")
    raise ImageReadError(path, f"unsupported image mode {img.mode}", "convert the file to 8-bit RGB or grayscale")


class FileStore:
    """Images as files under `root`; index items are paths relative to it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def load(self, item) -> np.ndarray:
        return read_image(self.root / str(item))

    def describe(self) -> str:
        return f"files under {self.root}"


class ArrayStore:
    """Images held in one array (N, H, W) or (N, H, W, C) uint8; index items are row numbers."""

    def __init__(self, array: np.ndarray, origin: str = "memory") -> None:
        self.array = array
        self.origin = origin

    def load(self, item) -> np.ndarray:
        if self.array.dtype != np.uint8:
            raise DataError(f"{self.origin}: image {item} holds {self.array.dtype} pixels; images must be 8-bit "
                            "(uint8, 0..255). Fix: convert the array before building the task, e.g. "
                            "(x * 255).round().astype(np.uint8) for values in 0..1.")
        return to_rgb_uint8(self.array[int(item)])

    def describe(self) -> str:
        return f"{len(self.array)} arrays of shape {self.array.shape[1:]} from {self.origin}"
