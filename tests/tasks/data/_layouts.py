"""Builders of tiny datasets in their publishers' real layouts, for the adapter tests.

Images are 16x16 PNG/JPEG files whose colour encodes their class, so a test can tell that a file
was labelled from the right folder.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(os.environ.get("MEDTL_FIXTURES", REPO.parent / "shared" / "data"))


@lru_cache(maxsize=64)
def image_bytes(shade: int = 128, fmt: str = "JPEG", mode: str = "RGB", size: int = 16) -> bytes:
    """An encoded uniform image; cached, so writing thousands of files costs only the writes."""
    array = np.full((size, size, 3), shade % 256, dtype=np.uint8)
    img = Image.fromarray(array).convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, fmt)
    return buffer.getvalue()


def write_image(path: Path, shade: int = 128, fmt: str = "JPEG", mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(shade, fmt, mode))
    return path


def write_class_folders(root: Path, counts: dict[str, int], *, suffix: str = ".jpg", mode: str = "RGB") -> Path:
    """`root/<class>/<class>_<i><suffix>` with `counts[class]` images; class i is painted 10*i + 5."""
    for i, (cls, n) in enumerate(counts.items()):
        for j in range(n):
            write_image(root / cls / f"{Path(cls).name}_{j}{suffix}", shade=10 * i + 5, mode=mode)
    return root


def class_counts(task) -> dict[str, int]:
    """{class name: number of index rows} for a single-label task."""
    labels = task.index["label"].to_numpy()
    return {name: int((labels == i).sum()) for i, name in enumerate(task.meta.class_names)}


LAPGYN4 = {  # part -> classes (two images each)
    "Actions_on_Anatomy": ["Suturing", "Cutting"],
    "Anatomical_Structures": ["Uterus", "Ovary"],
    "Instrument_Count": ["0", "1"],
    "Surgical_Actions": ["Coagulation"],
}
VIDEOS = {101: 20, 102: 20}  # tiny Cataract-101 stand-ins: id -> frames (10 fps)


def write_lapgyn4(root: Path) -> dict[str, int]:
    """Class folders of 8x8 JPEGs; each image's grey level is unique. Returns relative path -> grey level."""
    levels, level = {}, 10
    for part, classes in LAPGYN4.items():
        for cls in classes:
            folder = root / part / cls
            folder.mkdir(parents=True)
            for n in range(2):
                Image.new("RGB", (8, 8), (level,) * 3).save(folder / f"img_{n}.jpg", quality=95)
                levels[f"{part}/{cls}/img_{n}.jpg"] = level
                level += 12
    return levels


def write_cataract101(root: Path) -> None:
    import av

    (root / "videos").mkdir(parents=True)
    for vid, n in VIDEOS.items():
        with av.open(str(root / "videos" / f"case_{vid}.mp4"), "w") as out:
            stream = out.add_stream("mpeg4", rate=10)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            for f in range(n):
                img = np.full((32, 32, 3), 200, dtype=np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    pd.DataFrame({"VideoID": list(VIDEOS), "Frames": list(VIDEOS.values()), "FPS": 10, "Surgeon": 1,
                  "Experience": 1}).to_csv(root / "videos.csv", sep=";", index=False)
    pd.DataFrame({"Phase": [1, 2, 3], "Meaning": ["Incision", "Rhexis", "Polishing"]}).to_csv(
        root / "phases.csv", sep=";", index=False)
    pd.DataFrame({"VideoID": [101, 101, 102, 102], "FrameNo": [0, 10, 0, 5], "Phase": [1, 2, 1, 3]}).to_csv(
        root / "annotations.csv", sep=";", index=False)



def write_npz(path, entry, n=(6, 2, 4), side=28, seed=0):
    rng = np.random.default_rng(seed)
    n_classes = len(entry["label"])
    multilabel = entry["task"].startswith("multi-label")
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        shape = (count, side, side) + ((3,) if entry["n_channels"] == 3 else ())
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (
            rng.integers(0, 2, size=(count, n_classes)) if multilabel else rng.integers(0, n_classes, size=(count, 1))
        ).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays




# One tiny layout per registered dataset, as its publisher ships it: name -> (tmp folder) -> (root, options).
# test_every_adapter fails for a registered dataset without an entry here.
def _chest_xray(tmp: Path):
    for split in ("train", "test"):
        for i in range(3):
            write_image(tmp / "chest_xray" / split / "NORMAL" / f"IM-{i:04d}-0001.jpeg", 60, mode="L")
            write_image(tmp / "chest_xray" / split / "PNEUMONIA" / f"person{i}_bacteria_{i}.jpeg", 200, mode="L")
    return tmp, {}


def _csv(tmp: Path):
    rows = ["path,label"] + [f"img/{i}.png,{'ab'[i % 2]}" for i in range(8)]
    for i in range(8):
        write_image(tmp / "img" / f"{i}.png", 10 * i, fmt="PNG")
    (tmp / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp, {}


def _hyperkvasir(tmp: Path):
    from tasks.data.adapters.hyperkvasir import RELEASE_FOLDERS

    for cls in ("polyp", "normal-cecum"):
        for i in range(4):
            write_image(tmp / "labeled-images" / RELEASE_FOLDERS[cls] / f"{cls}-{i}.jpg", 40 if cls == "polyp" else 160)
    return tmp, {}


def _imageclef(tmp: Path):
    concepts = {"train": {"a1": "C01;C02", "a2": "C01", "a3": "C02"}, "val": {"b1": "C01", "b2": "C02"}}
    for split, rows in concepts.items():
        for image_id in rows:
            write_image(tmp / split / f"{image_id}.jpg")
        (tmp / f"concepts_{split}.csv").write_text("".join(f"{i}\t{c}\n" for i, c in rows.items()))
    return tmp, {}


def _kvasir(name: str):
    def build(tmp: Path):
        from tasks.data.adapters import kvasir

        write_class_folders(tmp / kvasir.FOLDERS[name], {c: 2 for c in kvasir.CLASSES[name]})
        return tmp, {}

    return build


def _medmnist(tmp: Path):
    from tasks.data.adapters.medmnist import medmnist_info

    write_npz(tmp / "breastmnist.npz", medmnist_info()["breastmnist"])
    return tmp / "breastmnist.npz", {}


def _medical_source(tmp: Path):
    write_lapgyn4(tmp / "LapGyn4_v1.2")
    write_cataract101(tmp / "cataract-101")
    return tmp, {"cache_dir": str(tmp / "frames")}


LAYOUTS = {
    "cataract101": lambda tmp: (write_cataract101(tmp) or tmp, {"cache_dir": str(tmp / "frames")}),
    "chest-xray": _chest_xray,
    "class-folders": lambda tmp: (write_class_folders(tmp, {"a": 3, "b": 3}), {}),
    "csv": _csv,
    "gen-general": lambda tmp: (None, {"per_class": 4}),
    "gen-medical": lambda tmp: (None, {"per_class": 4}),
    "gen-target": lambda tmp: (None, {"scale": 0.25}),
    "gen-standin": lambda tmp: (None, {"classes": ["NORMAL", "PNEUMONIA"], "official_split": True}),
    "hyperkvasir": _hyperkvasir,
    "imageclef-concepts": _imageclef,
    "kvasir-v1": _kvasir("kvasir-v1"),
    "kvasir-v2": _kvasir("kvasir-v2"),
    "lapgyn4": lambda tmp: (write_lapgyn4(tmp / "LapGyn4_v1.2") and tmp, {}),
    "lapgyn4+cataract101": _medical_source,
    "medico2018": _kvasir("medico2018"),
    "medmnist": _medmnist,
    "union": lambda tmp: (None, {"members": [{"dataset": "gen-general", "options": {"per_class": 4}},
                                             {"dataset": "gen-medical", "options": {"per_class": 4}}]}),
}
