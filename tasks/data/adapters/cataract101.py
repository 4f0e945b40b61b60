"""Cataract-101: frames sampled from the surgery videos, labelled with the surgical phase, grouped by video.

On-disk layout (the official release, unpacked):

    <root>/videos.csv         VideoID;Frames;FPS;Surgeon;Experience   one row per video
    <root>/phases.csv         Phase;Meaning                           phase id -> name (10 phases)
    <root>/annotations.csv    VideoID;FrameNo;Phase                   one row per phase START
    <root>/videos/case_<VideoID>.mp4                                  (or <root>/case_<VideoID>.mp4)

All three CSVs are `;`-separated with a header row. Frame numbers are 0-based positions in decode
order (the real annotations start phases at frame 0). A frame belongs to the last phase that started at
or before it; frames before a video's first annotated start have no phase and are left out. Class
names are the `Meaning` column, in ascending phase-id order (class id 0 = phase 1 "Incision").

Sampling: `fps=1.0` (default) takes frame floor(k * FPS / fps) for k = 0, 1, ... (FPS from
videos.csv), i.e. one frame per second of video; `every_n=N` takes frames 0, N, 2N, ... instead.

Decoding (PyAV) happens once per video and rate; the sampled frames are cached as JPEGs (quality 95):

    <cache>/<rate>/case_<VideoID>/<frame:06d>.jpg     rate = "fps<fps>" or "every<N>"

with <cache> = option `cache_dir`, else `$MEDTL_CACHE/cataract101`, else `<root>/.medtl_frames`. A
video's folder appears only after the whole video decoded and its frame count matched videos.csv
(it is written as `case_<id>.partial` and renamed), so a later load never trusts a half-written or
wrong cache. Index items are paths relative to `<cache>/<rate>`; group = VideoID.

A video listed in videos.csv that is neither on disk nor cached raises DataError, or is left out with a
warning when `missing="skip"`.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data.cards import DatasetCard, Source
from tasks.data.errors import DataError
from tasks.data.images import FileStore
from tasks.data.index import Task, TaskMeta, make_index
from tasks.data.registry import register_dataset
from tracking import settings

CSV_COLUMNS = {
    "videos.csv": ("VideoID", "Frames", "FPS"),
    "phases.csv": ("Phase", "Meaning"),
    "annotations.csv": ("VideoID", "FrameNo", "Phase"),
}
MISSING_POLICIES = ("error", "skip")
JPEG_QUALITY = 95  # frames are re-encoded once; 95 keeps JPEG loss well below the video codec's own


def read_csv(root: Path, name: str) -> pd.DataFrame:
    """One of the release's `;`-separated CSVs, with its required columns checked."""
    path = root / name
    if not path.is_file():
        raise DataError(
            f"cataract101: {path} not found; the dataset root must hold videos.csv, phases.csv and "
            "annotations.csv from the Cataract-101 release (pass --data-root <that folder>)."
        )
    frame = pd.read_csv(path, sep=";")
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in CSV_COLUMNS[name] if c not in frame.columns]
    if missing:
        raise DataError(
            f"cataract101: {path} lacks columns {missing} (found {list(frame.columns)}); expected a "
            f"';'-separated file with header {';'.join(CSV_COLUMNS[name])}."
        )
    return frame


def sampled_frames(n_frames: int, video_fps: float, *, fps: float | None, every_n: int | None) -> np.ndarray:
    """Frame numbers to take from a video of `n_frames` frames at `video_fps`."""
    if every_n is not None:
        return np.arange(0, n_frames, every_n, dtype=np.int64)
    step = video_fps / fps
    # Integer arithmetic where the step is whole (the common 25 fps / 1 fps case): no float drift.
    if float(step).is_integer():
        return np.arange(0, n_frames, int(step), dtype=np.int64)
    frames = np.floor(np.arange(int(np.ceil(n_frames / step))) * step + 1e-9).astype(np.int64)
    return np.unique(frames[frames < n_frames])


def phase_of_frames(frames: np.ndarray, starts: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Phase of each frame (last start at or before it; -1 before the first start). `starts` sorted."""
    pos = np.searchsorted(starts, frames, side="right") - 1
    return np.where(pos >= 0, phases[np.clip(pos, 0, None)], -1)


def frame_name(frame: int) -> str:
    return f"{int(frame):06d}.jpg"


def decode_frames(video: Path, wanted: Iterable[int], expected_frames: int, out_dir: Path) -> None:
    """Decode `video` once, write frames `wanted` as JPEGs into `out_dir`, check the frame count.

    `out_dir` appears only when all of this succeeded (written as `<out_dir>.partial`, then renamed).
    """
    import av  # imported here: only this adapter needs FFmpeg

    wanted = set(int(f) for f in wanted)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    count = 0
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise DataError(f"cataract101: {video} has no video stream; re-download case file {video.name}.")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame + slice threads: decoding every frame is the cost here
            for frame in container.decode(stream):
                if count in wanted:
                    frame.to_image().save(partial / frame_name(count), quality=JPEG_QUALITY)
                count += 1
    except av.FFmpegError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(
            f"cataract101: {video} cannot be decoded ({exc}); the file is damaged or not a video. Re-download "
            f"it from the Cataract-101 release, or remove its row from videos.csv and pass missing='skip'."
        ) from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if count != expected_frames:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(
            f"cataract101: {video} decodes to {count} frames but videos.csv says {expected_frames}; the "
            "annotation frame numbers would point at the wrong frames. Re-download the video (a truncated or "
            "re-encoded copy drops or adds frames) or use the videos.csv that belongs to these files."
        )
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)


def _cache_base(root: Path, cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    cache = settings.read("MEDTL_CACHE")
    if cache is not None:
        return cache / "cataract101"
    return root / ".medtl_frames"


def _find_video(root: Path, video_id: int) -> Path | None:
    for folder in (root / "videos", root):
        path = folder / f"case_{video_id}.mp4"
        if path.is_file():
            return path
    return None


def _is_cached(folder: Path, frames: np.ndarray) -> bool:
    if not folder.is_dir():
        return False
    present = set(os.listdir(folder))
    return all(frame_name(f) in present for f in frames)


def _check_rate(fps, every_n) -> tuple[float | None, int | None, str]:
    if fps is not None and every_n is not None:
        raise DataError("cataract101: pass either fps= or every_n=, not both.")
    if every_n is not None:
        if int(every_n) != every_n or every_n < 1:
            raise DataError(f"cataract101: every_n must be a whole number >= 1, got {every_n!r}.")
        return None, int(every_n), f"every{int(every_n)}"
    fps = 1.0 if fps is None else float(fps)
    if not fps > 0:
        raise DataError(f"cataract101: fps must be > 0 (frames per second of video to sample), got {fps!r}.")
    return fps, None, f"fps{fps:g}"


CARD = DatasetCard(
    summary="Cataract-101 surgery videos (medical pretraining source): frames labelled with 10 phases",
    layout="`{videos,phases,annotations}.csv` + `videos/case_<VideoID>.mp4`; frames sampled at `fps` (default 1) "
           "or `every_n`, labelled by the last phase started at or before the frame, grouped by video, cached "
           "as JPEGs (`cache_dir` / `$MEDTL_CACHE`)",
    split="grouped k-fold",
    source=Source(
        folder="cataract-101", page="http://ftp.itec.aau.at/datasets/ovid/cat-101/",
        manual="Fill in the ITEC Klagenfurt download form on the page; unpack the videos and CSVs under the root.",
        layout="cataract-101/{videos.csv,phases.csv,annotations.csv,videos/case_<VideoID>.mp4}",
        licence="research only; cite Schoeffmann et al. 2018"),
    settings=("cache_dir",),
)


@register_dataset("cataract101", card=CARD)
def cataract101(
    root: Path | None,
    *,
    fps: float | None = None,
    every_n: int | None = None,
    cache_dir: Path | str | None = None,
    missing: str = "error",
) -> Task:
    """Phase-labelled frames of the Cataract-101 videos (see the module docstring for layout and options)."""
    if root is None or not Path(root).is_dir():
        raise DataError(f"cataract101: dataset root {root} is not a folder; pass --data-root <Cataract-101 folder>.")
    if missing not in MISSING_POLICIES:
        raise DataError(f"cataract101: missing={missing!r}; valid values: {', '.join(MISSING_POLICIES)}.")
    root = Path(root)
    fps, every_n, rate = _check_rate(fps, every_n)
    videos = read_csv(root, "videos.csv")
    phases = read_csv(root, "phases.csv").sort_values("Phase")
    notes = read_csv(root, "annotations.csv").sort_values(["VideoID", "FrameNo"], kind="stable")
    phase_ids = phases["Phase"].to_numpy(dtype=np.int64)
    unknown = sorted(set(notes["Phase"].tolist()) - set(phase_ids.tolist()))
    if unknown:
        raise DataError(
            f"cataract101: {root / 'annotations.csv'} uses phase ids {unknown} that phases.csv does not define "
            f"(it has {phase_ids.tolist()}); use the phases.csv of the same release."
        )
    class_of_phase = {int(p): i for i, p in enumerate(phase_ids)}

    cache = _cache_base(root, cache_dir) / rate
    plan, absent = [], []
    for row in videos.itertuples(index=False):
        vid, n_frames, video_fps = int(row.VideoID), int(row.Frames), float(row.FPS)
        if fps is not None and fps > video_fps:
            raise DataError(
                f"cataract101: fps={fps:g} is more than video {vid}'s {video_fps:g} fps; use every_n=1 for every frame."
            )
        frames = sampled_frames(n_frames, video_fps, fps=fps, every_n=every_n)
        folder = cache / f"case_{vid}"
        path = _find_video(root, vid)
        if path is None and not _is_cached(folder, frames):
            absent.append(f"case_{vid}.mp4")
            continue
        plan.append((vid, n_frames, frames, folder, path))
    if absent:
        message = (
            f"cataract101: {len(absent)} of {len(videos)} videos listed in {root / 'videos.csv'} are not on disk "
            f"(e.g. {', '.join(absent[:5])}); expected them in {root / 'videos'} or {root}."
        )
        if missing == "error":
            raise DataError(message + " Copy the missing videos there, or pass missing='skip' to leave them out.")
        warnings.warn(message + " They are left out (missing='skip').", stacklevel=2)

    items, labels, groups = [], [], []
    for vid, n_frames, frames, folder, path in plan:
        rows = notes[notes["VideoID"] == vid]
        starts = rows["FrameNo"].to_numpy(dtype=np.int64)
        if len(starts) and starts.max() >= n_frames:
            raise DataError(
                f"cataract101: annotations.csv starts a phase at frame {int(starts.max())} of video {vid}, but "
                f"videos.csv gives it {n_frames} frames; the two files do not belong together."
            )
        phase = phase_of_frames(frames, starts, rows["Phase"].to_numpy(dtype=np.int64))
        if not (phase >= 0).any():
            warnings.warn(
                f"cataract101: video {vid} has no annotated phase at a sampled frame; left out.", stacklevel=2
            )
            continue
        if not _is_cached(folder, frames):
            try:
                folder.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataError(
                    f"cataract101: cannot create the frame cache {folder.parent} ({exc}); pass cache_dir=<a "
                    "writable folder> or set MEDTL_CACHE."
                ) from exc
            # Every sampled frame is cached, labelled or not, so the cache depends on (video, rate) only.
            decode_frames(path, frames, n_frames, folder)
        for frame, p in zip(frames, phase):
            if p >= 0:
                items.append(f"case_{vid}/{frame_name(frame)}")
                labels.append(class_of_phase[int(p)])
                groups.append(str(vid))
    if not items:
        raise DataError(f"cataract101: no labelled frames under {root} (are the videos and annotations.csv there?).")
    names = tuple(str(m).strip() for m in phases["Meaning"])
    meta = TaskMeta(f"cataract101:{rate}", names, "binary" if len(names) == 2 else "multiclass")
    return Task(meta, make_index(items, labels, groups=groups), FileStore(cache))
