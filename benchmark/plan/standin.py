"""A suite's stand-in: the same protocol on generated images, at a tiny size, so CI runs a paper's suite end to end.

    medtl benchmark papers/hicks2018 --stand-in            # writes .medtl_cache/standin/hicks2018-standin.yaml, runs it
    medtl benchmark papers/hicks2018 --stand-in --dry-run  # its cells, nothing run

What is kept: every backbone (by name), strategy, source (pretraining and double transfer included), grid value,
fraction, ensemble and external test set, the target's class names (read from the adapter's constants,
never from images), its kind (binary, multiclass, multi-label) and whether it has an official split.
So every row of the real suite's leaderboard appears in the stand-in's. What shrinks: every real
dataset becomes `gen-standin` (tasks/data/adapters/standin.py) with PER_CLASS images per class of
the stand-in image size; k-fold uses at most MAX_FOLDS folds and one seed (two with ensemble-seeds),
since folds and seeds are repeats of a row, not rows; training runs one epoch; every library network
(DenseNet, VGG, Inception ...) becomes `standin:<name>`, a tiny CNN named after it (a real network needs
seconds per step on a CPU; medtl's own small and designed CNNs stay as they are); a count in `fractions`
(657) becomes a count the tiny training fold holds (COUNT_PER_CLASS per class); the svm/vlad
`scales` and `vlad_k` values map, in order, onto small ones (224 / 544 / 864 -> 32 / 48 / 64 at a
32 px stand-in; vlad_k 64 / 256 -> 2 / 4), so each keeps its own row. What cannot be had offline:
`imagenet` weights (and `file:` / `run:` weights) become `scratch`; the stand-in suite's `stand_in`
note says so, and it tags every run and the report's protocol line. The stand-in suite is named
`<name>-standin`, so its runs never mix with the real suite's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmark.plan.schema import SuiteModel
from benchmark.plan.suite import read_suite

STANDIN = "gen-standin"
PER_CLASS = 6  # images per class: enough for 2-fold splits, a validation carve and the capped counts
COUNT_PER_CLASS = 2  # a count in `fractions` becomes this many images per target class (at most the count)
MAX_FOLDS = 2  # k-fold shrinks to this many folds (the rows stay; only their repeats go)
MIN_SIZE = 32  # stand-in image side unless a backbone needs more (its input_config().min_size)
SCALE_STEP = 16  # the stand-in scales: image size, + 16, + 32, ... in the real values' order
VLAD_KS = (2, 4, 8, 16)  # the stand-in vlad_k values, in the real values' order
FOLDER = Path(".medtl_cache") / "standin"  # where the stand-in suite file is written


@dataclass(frozen=True)
class Classes:
    """What a stand-in needs to know of a real dataset, without reading its images."""

    names: tuple[str, ...]  # class names, in the adapter's class-id order
    kind: str  # multiclass, binary or multilabel
    official: bool  # whether the dataset has an official split (cells then use it)
    placeholder: str = ""  # non-empty: the names are placeholders, and why


def _numbered(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i + 1:02d}" for i in range(n))


def _medmnist(path: str, options: dict) -> Classes:
    from tasks.data.adapters.medmnist import _flag_from_stem, medmnist_info

    info = medmnist_info()
    flag = options.get("flag") or _flag_from_stem(Path(path).stem, info)
    labels = info[flag]["label"]
    names = tuple(labels[k] for k in sorted(labels, key=int))
    return Classes(names, "multilabel" if "multi-label" in info[flag]["task"] else "binary" if len(names) == 2 else "multiclass", True)


def real_classes(dataset: str, path: str = "", options: dict | None = None) -> Classes:
    """The class names, kind and split layout of `dataset`, from its adapter's constants or cheap metadata."""
    from tasks.data.adapters import chestxray, hyperkvasir, kvasir

    options = dict(options or {})
    if dataset in kvasir.CLASSES:
        return Classes(tuple(kvasir.CLASSES[dataset]), "multiclass", False)
    if dataset == "chest-xray":
        return Classes(tuple(chestxray.CLASSES), "binary", True)
    if dataset == "hyperkvasir":
        return Classes(tuple(sorted(hyperkvasir.RELEASE_FOLDERS)), "multiclass", False)
    if dataset == "medmnist":
        return _medmnist(path, options)
    if dataset == "imageclef-concepts":
        k = int(options.get("top_k") or 10)
        return Classes(_numbered("C90000", k), "multilabel", True,
                       f"ImageCLEF concepts are known only from its CSVs: {k} placeholder CUIs (top_k)")
    if dataset == "cataract101":
        return Classes(_numbered("phase", 10), "multiclass", False, "Cataract-101 phase names are in its phases.csv: 10 placeholders")
    if dataset == "lapgyn4":
        return Classes(_numbered("lapgyn4-class", 21), "multiclass", False,
                       "LapGyn4 class folders are known only on disk: 21 placeholders (31 with Cataract-101's 10, as Hicks et al. count)")
    if dataset == "lapgyn4+cataract101":
        parts = [real_classes("lapgyn4"), real_classes("cataract101")]
        names = tuple(f"lapgyn4:{c}" for c in parts[0].names) + tuple(f"cataract101:{c}" for c in parts[1].names)
        return Classes(names, "multiclass", False, "; ".join(p.placeholder for p in parts))
    if dataset.startswith("gen-"):
        raise ValueError(f"{dataset} is generated already")
    # class-folders, csv, a dataset of the user's: its classes are known only on disk
    return Classes(_numbered("class", 4), "multiclass", False, f"{dataset} classes are known only on disk: 4 placeholders")


def _standin_options(classes: Classes, *, seed: int, size: int) -> dict:
    return {"classes": list(classes.names), "kind": classes.kind, "per_class": PER_CLASS,
            "official_split": classes.official, "size": size, "seed": seed}


def _block(block: dict, classes: Classes, *, seed: int, size: int, notes: list[str], where: str) -> dict:
    """A {dataset, path, options} block of the real suite, swapped for its stand-in."""
    if block["dataset"].startswith("gen-"):
        return block  # generated already
    if block["dataset"] == "union":
        members = []
        for j, member in enumerate(block["options"]["members"]):
            prefix = member.get("name") or member["dataset"]
            sub = _block({"dataset": member["dataset"], "path": member.get("path", ""), "options": member.get("options")},
                         real_classes(member["dataset"], member.get("path", ""), member.get("options")),
                         seed=seed + 10 * (j + 1), size=size, notes=notes, where=f"{where} member {prefix}")
            members.append({"name": prefix, "dataset": sub["dataset"], "options": sub["options"]})
        return {**block, "path": "", "options": {**block["options"], "members": members}}
    if classes.placeholder:
        notes.append(f"{where}: {classes.placeholder}")
    return {**block, "dataset": STANDIN, "path": "", "options": _standin_options(classes, seed=seed, size=size)}


def _weights(weights: str, where: str, notes: list[str]) -> str:
    if weights in ("scratch", "none") or weights.startswith("source:"):
        return weights
    notes.append(f"{where}: weights {weights} -> scratch (not available offline)")
    return "scratch"


def _ranked(values: list, small: list) -> dict:
    """Each distinct value -> the small value of its rank (so distinct real values stay distinct rows)."""
    ordered = sorted(set(values))
    return {v: small[i] for i, v in enumerate(ordered)}


def _rescale(hparams: dict, grid: dict, size: int) -> tuple[dict, dict]:
    """`scales` and `vlad_k` (in hparams and grid) mapped onto small values, in order; pca dims capped."""
    scale_values = [int(s) for v in [hparams.get("scales"), *grid.get("scales", [])] if v for s in str(v).split(",")]
    scale_map = _ranked(scale_values, [size + SCALE_STEP * i for i in range(len(set(scale_values)))])
    k_values = [hparams["vlad_k"]] if "vlad_k" in hparams else []
    k_map = _ranked(k_values + list(grid.get("vlad_k", [])), list(VLAD_KS))

    def one(name: str, value: Any) -> Any:
        if name == "scales":
            return ",".join(str(scale_map[int(s)]) for s in str(value).split(","))
        if name == "vlad_k":
            return k_map[value]
        if name in ("pca_dim", "descriptor_pca_dim") and value:
            return min(int(value), 4)
        if name in ("svm_cv",):
            return 2
        return value

    return ({n: one(n, v) for n, v in hparams.items()}, {n: [one(n, v) for v in vs] for n, vs in grid.items()})


def standin_backbone(name: str) -> str:
    """The backbone a stand-in trains for `name`: medtl's own small CNNs as they are (they are cheap, and Rahman's
    designed CNNs are the point of his suite), every library network as `standin:<name>` (backbones/zoo/standin_models.py)."""
    from backbones.registry import backbone_entry

    if name.startswith("standin:") or backbone_entry(name).family.startswith("medtl"):
        return name
    return f"standin:{name}"


def _image_size(backbones: list[str]) -> int:
    from backbones.registry import input_config

    return max([MIN_SIZE, *(input_config(b).min_size for b in backbones)])


def standin_suite(model: SuiteModel) -> dict:
    """The stand-in of a validated suite, as the mapping of a suite file (see the module docstring)."""
    from tasks.training import get_strategy

    raw = model.model_dump(exclude_none=True)
    notes: list[str] = []
    backbones = [standin_backbone(b) for b in model.backbones]
    size = _image_size(backbones)
    target = raw["target"]
    classes = real_classes(target["dataset"], target.get("path", ""), target.get("options"))
    new_target = _block({k: target[k] for k in ("dataset", "path", "options") if k in target}, classes,
                        seed=0, size=size, notes=notes, where="target")
    if "positive_class" in target:
        new_target["positive_class"] = target["positive_class"]
    for j, extra in enumerate(target.get("extra_train", [])):
        extra_classes = Classes(tuple(extra["classes"]), "multiclass", False)
        new_target.setdefault("extra_train", []).append(
            {**_block({k: extra[k] for k in ("dataset", "path", "options") if k in extra}, extra_classes, seed=100 + j,
                      size=size, notes=notes, where=f"target.extra_train[{j}]"), "classes": extra["classes"]})
    for j, external in enumerate(target.get("external", [])):
        if external.get("split") == "official":
            new_target.setdefault("external", []).append(external)
            continue
        # Another site's copy of the target's classes: the target's names, other images (another seed).
        same = Classes(classes.names, classes.kind, False)
        block = _block({k: external[k] for k in ("dataset", "path", "options") if k in external}, same, seed=200 + j,
                       size=size, notes=[], where=f"target.external[{j}]")
        new_target.setdefault("external", []).append({"name": external["name"], **block})
    sources = {}
    for name, source in raw["sources"].items():
        only = {"backbones": [standin_backbone(b) for b in source["backbones"]]} if "backbones" in source else {}
        if "weights" in source:
            sources[name] = {"weights": _weights(source["weights"], f"sources.{name}", notes), **only}
            continue
        pre = source["pretrain"]
        block = _block({k: pre[k] for k in ("dataset", "path", "options") if k in pre},
                       real_classes(pre["dataset"], pre.get("path", ""), pre.get("options")) if pre["dataset"] not in ("union",) and not pre["dataset"].startswith("gen-") else None,
                       seed=300 + len(sources), size=size, notes=notes, where=f"sources.{name}")
        folds = pre.get("folds", 5)
        sources[name] = {"pretrain": {**block, "weights": _weights(pre.get("weights", "scratch"), f"sources.{name}.pretrain", notes),
                                      "folds": folds if folds == "official" else min(int(folds), 3),
                                      "hparams": {**pre.get("hparams", {}), "epochs": 1}}, **only}
    hparams, grid = _rescale(dict(raw.get("hparams") or {}), dict(raw.get("grid") or {}), size)
    hparams["epochs"] = 1
    hparams.pop("phase_epochs", None)  # one epoch: the phases split its steps (every phase still reached)
    if any(get_strategy(s).combines == "seeds" for s in model.strategies):
        seeds = model.seeds[:2]
    else:
        seeds = model.seeds[:1]
    n_classes = len(classes.names)
    fractions = [min(f, COUNT_PER_CLASS * n_classes) if isinstance(f, int) else f for f in model.fractions]
    if len(set(fractions)) < len(fractions):
        raise ValueError(f"the stand-in's counts {fractions} collide; give the real suite distinct counts above "
                         f"{COUNT_PER_CLASS * n_classes}")
    swapped = [b for b in model.backbones if standin_backbone(b) != b]
    notes.append(f"{', '.join(swapped)} -> standin:<name>, a tiny CNN each" if swapped else "")
    notes.append(f"counts {[f for f in model.fractions if isinstance(f, int)]} -> {[f for f in fractions if isinstance(f, int)]} "
                 f"images" if any(isinstance(f, int) for f in model.fractions) else "")
    stand_in = {
        **{k: v for k, v in raw.items() if k not in ("hparams_from", "tune_budget")},
        "name": f"{model.name}-standin",
        "description": f"stand-in of {model.name}: generated images ({PER_CLASS} per class, {size} px), 1 epoch",
        "stand_in": "; ".join(n for n in notes if n) or "generated images only",
        "target": new_target,
        "folds": model.folds if model.folds == "official" else min(model.folds, MAX_FOLDS),
        "seeds": seeds,
        "fractions": fractions,
        "sources": sources,
        "backbones": backbones,
        "hparams": hparams,
        "image_size": size,
        "throughput": {"batch_size": 4, "warmup": 0, "batches": 1},
        "precision": "32-true",
        "devices": 1,
        "num_workers": 0,
        "save_checkpoints": False,
    }
    if grid:
        stand_in["grid"] = grid
    return stand_in


def write_standin(path: Path | str, folder: Path = FOLDER) -> Path:
    """Write the stand-in of the suite at `path` as `<folder>/<name>-standin.yaml`; its path."""
    # Shape only: the real datasets and weights (an uncached hub model, ImageNet) are what the stand-in replaces.
    model = read_suite(path, check=False)
    suite = standin_suite(model)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{suite['name']}.yaml"
    header = (f"# Generated by `medtl benchmark {path} --stand-in` (benchmark/plan/standin.py); do not edit.\n"
              f"# {suite['stand_in']}\n")
    out.write_text(header + yaml.safe_dump(suite, sort_keys=False))
    return out
