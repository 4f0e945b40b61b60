"""Cataract-101 adapter on tiny real mp4 videos written with PyAV.

The CSVs are the real ones (../shared/data/cataract101 or $MEDTL_FIXTURES/cataract101): phases.csv as
is, and for three real video ids the real annotation rows, their frame numbers rescaled to the tiny
videos. Every frame's pixels encode its frame number, so a test can tell which frame was decoded.

    .venv/bin/python -m pytest tests/tasks/data/test_cataract101.py -q -p no:cacheprovider
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

av = pytest.importorskip("av")

from tasks.data import DataError, list_datasets, load_task  # noqa: E402
from tasks.data.adapters import cataract101 as adapter  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(os.environ.get("MEDTL_FIXTURES", REPO.parent / "shared" / "data"))
REAL = FIXTURES / "cataract101"
TINY = {269: 40, 270: 50, 271: 30}  # video id -> frames of its tiny stand-in
TINY_FPS = 10
W, H = 64, 48

pytestmark = pytest.mark.skipif(
    not (REAL / "annotations.csv").is_file(), reason=f"real Cataract-101 CSVs not found in {REAL}"
)


def code(frame: int) -> int:
    """Grey level that frame `frame` is painted with (distinct by 4 levels: survives h264 + JPEG)."""
    return 8 + 4 * frame


def write_video(path: Path, n_frames: int, fps: int = TINY_FPS) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "1"}  # near-lossless: the frame code must survive
        for f in range(n_frames):
            img = np.full((H, W, 3), code(f), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def tiny_csvs(root: Path) -> pd.DataFrame:
    """Write videos.csv / annotations.csv for TINY into `root`, copy phases.csv; return the annotations."""
    videos = pd.read_csv(REAL / "videos.csv", sep=";")
    notes = pd.read_csv(REAL / "annotations.csv", sep=";")
    videos = videos[videos["VideoID"].isin(TINY)].copy()
    real_frames = dict(zip(videos["VideoID"], videos["Frames"]))
    videos["Frames"] = videos["VideoID"].map(TINY)
    videos["FPS"] = TINY_FPS
    notes = notes[notes["VideoID"].isin(TINY)].copy()
    notes["FrameNo"] = [
        int(f * TINY[v] // real_frames[v]) for v, f in zip(notes["VideoID"], notes["FrameNo"])
    ]
    # Video 269's first phase starts at frame 3, so frames 0-2 are unlabelled and must be left out.
    first = notes.index[notes["VideoID"] == 269][0]
    notes.loc[first, "FrameNo"] = 3
    videos.to_csv(root / "videos.csv", sep=";", index=False)
    notes.to_csv(root / "annotations.csv", sep=";", index=False)
    shutil.copy(REAL / "phases.csv", root / "phases.csv")
    return notes


def expected_phase(notes: pd.DataFrame, video: int, frame: int) -> int | None:
    """Independent reading of the rule: the last phase started at or before `frame` (file order)."""
    phase = None
    for row in notes[notes["VideoID"] == video].itertuples():
        if row.FrameNo <= frame:
            phase = row.Phase
    return phase


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("c101_videos")
    for vid, n in TINY.items():
        write_video(folder / f"case_{vid}.mp4", n)
    return folder


@pytest.fixture
def root(tmp_path, video_dir) -> Path:
    root = tmp_path / "cataract-101"
    (root / "videos").mkdir(parents=True)
    for path in video_dir.iterdir():
        shutil.copy(path, root / "videos" / path.name)
    tiny_csvs(root)
    return root


def frame_of(item: str) -> int:
    return int(Path(item).stem)


def test_registered():
    assert "cataract101" in list_datasets()


def test_every_frame_labelled_exactly_and_decoded_right(root):
    task = load_task("cataract101", root, every_n=1)
    notes = pd.read_csv(root / "annotations.csv", sep=";")
    phases = pd.read_csv(root / "phases.csv", sep=";").sort_values("Phase")
    assert task.meta.class_names == tuple(phases["Meaning"]) and task.meta.num_classes == 10
    expected_rows = [(v, f) for v, n in TINY.items() for f in range(n) if expected_phase(notes, v, f) is not None]
    got_rows = [(int(g), frame_of(i)) for g, i in zip(task.index["group"], task.index["item"])]
    assert got_rows == expected_rows
    assert (269, 0) not in got_rows and (269, 3) in got_rows  # frames before the first start are skipped
    phase_ids = list(phases["Phase"])
    for (vid, frame), label in zip(got_rows, task.index["label"]):
        assert phase_ids[label] == expected_phase(notes, vid, frame)
    for row in (0, len(task.index) // 2, len(task.index) - 1):
        pixels = task.images.load(task.index["item"][row])
        assert pixels.shape == (H, W, 3)
        assert abs(float(pixels.mean()) - code(frame_of(task.index["item"][row]))) < 1.5


def test_fps_sampling_takes_one_frame_per_step(root, tmp_path):
    task = load_task("cataract101", root, fps=2.0, cache_dir=tmp_path / "cache")  # 10 fps video -> every 5th
    notes = pd.read_csv(root / "annotations.csv", sep=";")
    for vid, n in TINY.items():
        frames = [frame_of(i) for i, g in zip(task.index["item"], task.index["group"]) if g == str(vid)]
        assert frames == [f for f in range(0, n, 5) if expected_phase(notes, vid, f) is not None]
    assert (tmp_path / "cache" / "fps2" / "case_270" / "000045.jpg").is_file()
    item = task.index["item"][len(task.index) - 1]
    assert abs(float(task.images.load(item).mean()) - code(frame_of(item))) < 1.5
    assert not (root / ".medtl_frames").exists()


def test_sampled_frames_non_integer_step():
    frames = adapter.sampled_frames(20, 25.0, fps=10.0, every_n=None)  # step 2.5
    assert frames.tolist() == [0, 2, 5, 7, 10, 12, 15, 17]


def test_second_load_reads_the_cache_only(root, monkeypatch):
    calls = []
    real_decode = adapter.decode_frames
    monkeypatch.setattr(adapter, "decode_frames", lambda *a: (calls.append(a[0]), real_decode(*a)))
    first = load_task("cataract101", root)
    assert sorted(Path(p).name for p in calls) == sorted(f"case_{v}.mp4" for v in TINY)
    assert (root / ".medtl_frames" / "fps1" / "case_269").is_dir()

    def refuse(*_):
        raise AssertionError("decoded again although the frames are cached")

    monkeypatch.setattr(adapter, "decode_frames", refuse)
    second = load_task("cataract101", root)
    pd.testing.assert_frame_equal(first.index, second.index)
    # The videos are no longer needed once cached.
    shutil.rmtree(root / "videos")
    third = load_task("cataract101", root)
    pd.testing.assert_frame_equal(first.index, third.index)


def test_medtl_cache_env(root, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_CACHE", str(tmp_path / "env-cache"))
    task = load_task("cataract101", root, every_n=10)
    assert task.images.root == tmp_path / "env-cache" / "cataract101" / "every10"
    assert (task.images.root / task.index["item"][0]).is_file()


def test_frame_count_mismatch_is_an_error_and_leaves_no_cache(root):
    videos = pd.read_csv(root / "videos.csv", sep=";")
    videos.loc[videos["VideoID"] == 270, "Frames"] = 51
    videos.to_csv(root / "videos.csv", sep=";", index=False)
    with pytest.raises(DataError, match=r"case_270\.mp4 decodes to 50 frames but videos\.csv says 51.*Re-download"):
        load_task("cataract101", root, every_n=1)
    cache = root / ".medtl_frames" / "every1"
    assert not (cache / "case_270").exists() and not (cache / "case_270.partial").exists()


def test_undecodable_video_is_an_error(root):
    (root / "videos" / "case_271.mp4").write_bytes(b"\x00not a video at all" * 100)
    with pytest.raises(DataError, match=r"case_271\.mp4 cannot be decoded.*Re-download"):
        load_task("cataract101", root)


def test_missing_videos_error_or_skip(root):
    (root / "videos" / "case_270.mp4").unlink()
    with pytest.raises(DataError, match=r"1 of 3 videos .* not on disk \(e\.g\. case_270\.mp4\).*missing='skip'"):
        load_task("cataract101", root)
    with pytest.warns(UserWarning, match="case_270.mp4"):
        task = load_task("cataract101", root, missing="skip")
    assert set(task.index["group"]) == {"269", "271"}


def test_videos_directly_in_root(root):
    for path in (root / "videos").iterdir():
        path.rename(root / path.name)
    (root / "videos").rmdir()
    task = load_task("cataract101", root, every_n=5)
    assert set(task.index["group"]) == {str(v) for v in TINY}


def test_bad_options(root):
    with pytest.raises(DataError, match="either fps= or every_n="):
        load_task("cataract101", root, fps=1.0, every_n=3)
    with pytest.raises(DataError, match="every_n=1 for every frame"):
        load_task("cataract101", root, fps=30.0)
    with pytest.raises(DataError, match="valid values: error, skip"):
        load_task("cataract101", root, missing="ignore")


def test_annotations_beyond_the_video_are_an_error(root):
    notes = pd.read_csv(root / "annotations.csv", sep=";")
    notes.loc[notes.index[-1], "FrameNo"] = 10_000
    notes.to_csv(root / "annotations.csv", sep=";", index=False)
    with pytest.raises(DataError, match="do not belong together"):
        load_task("cataract101", root)


def test_real_csvs_without_videos(tmp_path):
    """The real release's CSVs parse; without videos the error says how many are missing."""
    for name in ("videos.csv", "phases.csv", "annotations.csv"):
        shutil.copy(REAL / name, tmp_path / name)
    with pytest.raises(DataError, match=r"101 of 101 videos"):
        load_task("cataract101", tmp_path)
