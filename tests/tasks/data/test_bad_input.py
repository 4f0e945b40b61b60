"""Bad input from the issue: every case is converted correctly or reported with file, problem and fix.

    .venv/bin/python -m pytest tests/tasks/data/test_bad_input.py -q -p no:cacheprovider
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from tests.tasks.data._layouts import image_bytes, write_class_folders, write_image
from PIL import Image, ImageFile

from tasks.data import DataError, ImageReadError, load_task
from tasks.data.adapters.kvasir import KVASIR_CLASSES
from tasks.data.images import read_image


def _noise(h=32, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _assert_reported(err, path):
    message = str(err.value)
    assert path.name in message and "Fix:" in message and err.value.path == str(path)


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
@pytest.mark.parametrize("lenient_elsewhere", [False, True])
def test_truncated_files_raise_even_if_someone_enabled_lenient_loading(tmp_path, fmt, suffix, lenient_elsewhere):
    buffer = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(buffer, fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    ImageFile.LOAD_TRUNCATED_IMAGES = lenient_elsewhere
    try:
        with pytest.raises(ImageReadError, match="truncated") as err:
            read_image(path)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is lenient_elsewhere  # the caller's setting is restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    _assert_reported(err, path)


@pytest.mark.parametrize("content", [b"", b"<html>404 Not Found</html>", b"\xff\xd8\xff\xe0garbage" * 20])
def test_corrupt_or_non_image_files_raise_with_fix(tmp_path, content):
    path = tmp_path / "scan.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    _assert_reported(err, path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist.*Fix: check the dataset root"):
        read_image(tmp_path / "nope.png")


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(1000, 60000, 16 * 16).reshape(16, 16).astype(np.uint16)
    path = tmp_path / "xray16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = read_image(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (16, 16, 3)
    assert pixels.min() == 0 and pixels.max() == 255  # full range used: nothing clipped to white
    assert len(np.unique(pixels[..., 0])) > 200  # the ramp stays a ramp
    assert (np.diff(pixels[..., 0].reshape(-1).astype(int)) >= 0).all()


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_png(tmp_path, transparent):
    img = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]] * 2, dtype=np.uint8)).convert("P")
    path = tmp_path / "palette.png"
    img.save(path, transparency=img.getpixel((1, 0)) if transparent else None)
    pixels = read_image(path)
    assert pixels.shape == (2, 2, 3)
    assert tuple(pixels[0, 0]) == (255, 0, 0)
    assert tuple(pixels[0, 1]) == ((0, 0, 0) if transparent else (0, 0, 255))


def test_rgba_is_composited_on_black(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 1] = 200
    rgba[:2, :, 3] = 255  # top half opaque green, bottom half transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    pixels = read_image(path)
    assert (pixels[:2, :, 1] == 200).all() and (pixels[2:] == 0).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (16, 16), (200, 40, 40)).convert("CMYK").save(path, quality=100)
    assert Image.open(path).mode == "CMYK"
    pixels = read_image(path).astype(int)
    assert pixels.shape == (16, 16, 3) and np.abs(pixels.mean(axis=(0, 1)) - (200, 40, 40)).max() < 12


def test_exif_orientation_6_is_rotated(tmp_path):
    stored = np.zeros((8, 16, 3), dtype=np.uint8)  # landscape as stored, red marker top-left
    stored[:3, :3] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display", as phones write it
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    pixels = read_image(path)
    assert pixels.shape == (16, 8, 3)  # displayed portrait
    assert pixels[1, -2, 0] > 200 and pixels[1, 1, 0] < 60  # the marker moved to the top-right


def test_grayscale_jpeg_is_three_equal_channels(tmp_path):
    path = write_image(tmp_path / "gray.jpg", shade=90, mode="L")
    pixels = read_image(path)
    assert pixels.shape == (16, 16, 3) and (pixels[..., 0] == pixels[..., 1]).all() and abs(pixels.mean() - 90) < 3


def test_empty_class_folder_is_an_error(tmp_path):
    write_class_folders(tmp_path, {cls: 1 for cls in KVASIR_CLASSES})
    for path in (tmp_path / "polyps").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="polyps holds no image files.*add its images or delete the folder"):
        load_task("kvasir-v2", tmp_path)


def test_non_image_files_in_class_folders_are_ignored_with_a_warning(tmp_path):
    write_class_folders(tmp_path, {cls: 2 for cls in KVASIR_CLASSES})
    (tmp_path / "polyps" / "notes.txt").write_text("not an image")
    (tmp_path / "polyps" / ".DS_Store").write_bytes(b"\0")
    with pytest.warns(UserWarning, match=r"ignored 1 file\(s\).*polyps/notes.txt.*Move them out"):
        task = load_task("kvasir-v2", tmp_path)
    assert len(task.index) == 16 and not task.index["item"].str.endswith(".txt").any()


def test_corrupt_file_in_a_dataset_fails_on_load_naming_it(tmp_path):
    write_class_folders(tmp_path, {cls: 2 for cls in KVASIR_CLASSES})
    bad = tmp_path / "esophagitis" / "esophagitis_1.jpg"
    bad.write_bytes(image_bytes(50)[:100])
    task = load_task("kvasir-v2", tmp_path)
    with pytest.raises(ImageReadError) as err:
        task.images.load("esophagitis/esophagitis_1.jpg")
    _assert_reported(err, bad)
    assert task.images.load("esophagitis/esophagitis_0.jpg").mean() > 0


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1 / 255), (np.float64, 1.0), (np.int64, 1)])
def test_npz_with_non_uint8_pixels_names_file_key_and_conversion(tmp_path, dtype, scale):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, 28, 28)).astype(dtype) * scale
    labels = np.array([[0], [1], [0], [1]], dtype=np.uint8)
    path = tmp_path / "breastmnist.npz"
    np.savez(path, train_images=pixels.astype(np.uint8), train_labels=labels,
             test_images=pixels.astype(dtype), test_labels=labels)
    with pytest.raises(DataError) as err:
        load_task("medmnist", path)
    message = str(err.value)
    assert str(path) in message and "'test_images'" in message  # the file and the key
    assert np.dtype(dtype).name in message and "uint8" in message  # what is wrong
    assert "Fix:" in message and "astype(np.uint8)" in message  # how to fix it
    assert "'train_images'" not in message  # the good key is not blamed
