"""The suite YAML's schema: every value checked (type, range, duplicates, paths) before any cell runs.

    medtl benchmark my-suite.yaml      # a bad value stops here: file, key path, fix; exit 2, no MLflow run

pydantic checks the shape (types, ranges, unknown keys, duplicated axis values, `weights` and
`pretrain` both given, a suite name that is a safe file name); hyperparameter values are checked by
the one hyperparameter table (`tasks.training.hparams.HParam.check`), so their ranges live in one
place. `UniqueKeyLoader` refuses a key written twice in one YAML mapping (PyYAML keeps the last one
silently). `SuiteModel` is the one description of a suite: every default lives here, and
`benchmark.plan.suite` expands the validated model (never the raw mapping) into cells.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# A suite name becomes the MLflow experiment `medtl-<name>` and the folder `reports/<name>`: no
# separators, no leading dot, so it can never point outside the working directory.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
SHOWN = 10  # errors listed in one message


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with a key written twice (PyYAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor` merges are resolved by SafeLoader itself
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader reports it below
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        f"while reading a mapping (line {first.line + 1})", first,
                        f"key {key!r} is written twice (lines {first.line + 1} and {key_node.start_mark.line + 1}); "
                        "YAML would keep only the last. Fix: delete one of them", key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _precisions() -> tuple:
    from lightning.fabric.connector import _PRECISION_INPUT

    def flat(tp) -> list:
        args = typing.get_args(tp)
        return [v for a in args for v in flat(a)] if args and typing.get_origin(tp) is not Literal else list(args)

    return tuple(dict.fromkeys(str(v) for v in flat(_PRECISION_INPUT)))


def _unique(values: list, what: str) -> list:
    seen, repeated = set(), []
    for v in values:
        key = repr(v)
        if key in seen:
            repeated.append(v)
        seen.add(key)
    if repeated:
        raise ValueError(f"{what} {', '.join(map(repr, repeated))} given more than once; each value counts once "
                         "(a repeat would count its cells twice in n and the std)")
    return values


class _Strict(BaseModel):
    # strict: "10" is not 10 and true is not 1; forbid: a misspelt key is an error, not a no-op;
    # frozen: the validated suite is what every cell was expanded from, so nothing may change it later.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _fraction(value: float | int) -> float | int:
    """A share of the training rows in (0, 1] (a float; 1 means all rows) or a count of images (an int > 1)."""
    if isinstance(value, int) and value > 1:
        return value
    if value <= 0:
        raise ValueError("a fraction must be greater than 0 (a share in (0, 1]) or a whole number > 1 (a count of images)")
    if value > 1:
        if float(value).is_integer():
            raise ValueError(f"a count of images is a whole number; write {int(value)} (without the decimal point)")
        raise ValueError("a fraction must be less than or equal to 1 (a share of the training rows) or a whole number "
                         "> 1 (a count of images)")
    return float(value)


# A share of the training rows (0.25) or a number of training images (657, Hicks et al.'s tiny run).
Fraction = Annotated[float | int, AfterValidator(_fraction)]


Folds = Annotated[int, Field(ge=2)] | Literal["official"]


class ExtraTrain(_Strict):
    """Minority-class extension (Hicks et al.): extra images for `classes`, training rows only."""

    dataset: str
    path: str = ""
    options: dict[str, Any] | None = None
    classes: Annotated[list[str], Field(min_length=1)]


class External(_Strict):
    """An external test set (benchmark/cell/external.py): another site's data with the target's class names,
    or `split: official`, the target's own official test split (the cells then run k-fold on its other rows)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]  # names its metrics external/<name>/* and artifacts
    dataset: str | None = None  # a registered dataset name
    path: str = ""  # under --data-root
    options: dict[str, Any] | None = None  # adapter options
    split: Literal["official"] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "External":
        if (self.dataset is None) == (self.split is None):
            raise ValueError("give either 'dataset' (another site's data) or 'split: official' (the target's official "
                             "test split), not both and not neither")
        return self


class Target(_Strict):
    dataset: str  # a registered dataset name (checked against the registry afterwards)
    path: str = ""  # under --data-root; "" for generated data
    options: dict[str, Any] | None = None  # adapter options (checked against the adapter afterwards)
    extra_train: list[ExtraTrain] | None = None  # tasks/data/extension.py
    external: list[External] | None = None  # external test sets every fine-tuning cell is also scored on

    @field_validator("external")
    @classmethod
    def _distinct_names(cls, external: list[External] | None) -> list[External] | None:
        _unique([e.name for e in external or []], "external set name")
        return external
    # A binary target's positive class: its recall, precision and F1 are reported beside the macro
    # ones (Rahman's pneumonia class). Checked against the task's class names before the first cell.
    positive_class: Annotated[str, Field(min_length=1)] | None = None


class Pretrain(_Strict):
    dataset: str
    path: str = ""
    options: dict[str, Any] | None = None
    weights: str = "scratch"  # where pretraining starts: imagenet gives double transfer
    folds: Folds = 5  # the held-out part: fold 0 of k, or the official test split
    hparams: dict[str, Any] | None = None  # values checked by the hyperparameter table


class Source(_Strict):
    weights: str | None = None
    pretrain: Pretrain | None = None
    # Only these backbones take this source (a foundation model's own weights, ImageNet for the CNNs of one suite);
    # None: every backbone of the suite. Expansion only: which cells exist, never a cell's identity.
    backbones: Annotated[list[str], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Source":
        if self.weights is not None and self.pretrain is not None:
            raise ValueError("both 'weights' and 'pretrain' are given; a source is one or the other")
        if self.weights is None and self.pretrain is None:
            raise ValueError("neither 'weights' nor 'pretrain' is given")
        return self


class Throughput(_Strict):
    """How each cell's inference FPS is measured (benchmark/speed/throughput.py), and machine settings."""

    batch_size: Annotated[int, Field(ge=1)] = 32
    warmup: Annotated[int, Field(ge=0)] = 2
    batches: Annotated[int, Field(ge=1)] = 5
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"  # a machine setting (tasks.training.speed)
    pipeline: Literal["auto", "cpu", "device"] = "auto"  # a machine setting (tasks.data.device_pipeline)
    compile: bool = False  # torch.compile the training steps; a machine setting (tasks.training.speed.Compile)


class Repeats(_Strict):
    """Seeds added in rounds until the top rows' comparison is decided (benchmark/run/repeats.py)."""

    until: Literal["decided"]  # the one stopping rule: the group-sequential boundary (benchmark/report/sequential.py)
    max_seeds: Annotated[int, Field(ge=2)]  # seeds in all, the suite's own included; one round adds one


class Tune(_Strict):
    scope: Literal["nested", "shared"] = "nested"  # a study per (row, outer fold), or one per row (optimistic)


class SuiteModel(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str | None = None
    # Set by `--stand-in` only (benchmark/plan/standin.py): what the generated run replaced (data, ImageNet
    # weights); it tags every run and the report's protocol line, so a stand-in number is never read as a result.
    stand_in: str | None = None
    target: Target
    folds: Folds = 3
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = [0]
    fractions: Annotated[list[Fraction], Field(min_length=1)] = [1.0]
    backbones: Annotated[list[str], Field(min_length=1)]
    strategies: Annotated[list[str], Field(min_length=1)] = ["full"]
    sources: Annotated[dict[str, Source], Field(min_length=1)]
    hparams: dict[str, Any] | None = None
    # Hyperparameter axes: name -> values, one row per combination (of the names a strategy reads).
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] | None = None
    image_size: Annotated[int, Field(ge=1)] | Literal["native"] = 224
    throughput: Throughput = Throughput()  # `throughput:` left empty means the defaults
    precision: str = "32-true"
    devices: Annotated[int, Field(ge=1)] = 1
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"  # per device: tasks.data.device_pipeline.loader_workers
    save_checkpoints: bool = False
    hparams_from: Literal["optuna"] | None = None  # each row's cells take its study's best trial (benchmark/tune/study.py)
    tune_budget: Annotated[int, Field(ge=1)] | None = None  # trials per row, tuned before the fine-tuning cells
    repeats: Repeats | None = None  # seeds added in rounds until decided (benchmark/run/repeats.py)
    tune: Tune | None = None  # which study a tuned cell uses (benchmark/plan/tuning.py)
    transferability: bool = True  # LogME / H-score per source x backbone before fine-tuning (benchmark/cell/transferability.py)

    @model_validator(mode="after")
    def _repeats_fit(self) -> "SuiteModel":
        if self.repeats is not None and self.folds == "official":
            raise ValueError("repeats need k-fold folds: on the official split every seed tests the same images, so "
                             "added seeds cannot decide a comparison")
        if self.repeats is not None and self.repeats.max_seeds <= len(self.seeds):
            raise ValueError(f"repeats.max_seeds ({self.repeats.max_seeds}) leaves no round to add: the suite already has "
                             f"{len(self.seeds)} seed(s)")
        return self

    @field_validator("seeds", "fractions", "backbones", "strategies")
    @classmethod
    def _no_repeats(cls, values: list, info) -> list:
        return _unique(values, info.field_name[:-1] if info.field_name != "fractions" else "fraction")

    @field_validator("throughput", mode="before")
    @classmethod
    def _empty_throughput(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("grid")
    @classmethod
    def _grid_values(cls, grid: dict | None) -> dict | None:
        for name, values in (grid or {}).items():
            _unique(values, f"grid.{name} value")
        return grid

    @field_validator("precision")
    @classmethod
    def _precision(cls, value: str) -> str:
        valid = _precisions()
        if value not in valid:
            raise ValueError(f"precision {value!r} is not one Lightning knows ({', '.join(valid)})")
        return value


# The fix for a bad value, by the nearest named key of its path.
FIXES = {
    "name": "use letters, digits, '.', '_' and '-' only (it names the report folder and the MLflow experiment), "
            "e.g. name: my-suite",
    "folds": "write an integer >= 2 (k-fold) or 'official' (the dataset's own split)",
    "seeds": "write a list of distinct integers >= 0, e.g. seeds: [0, 1, 2]",
    "fractions": "write a list of distinct label fractions in (0, 1] or image counts > 1, e.g. fractions: [0.25, 1.0] "
                 "or [657, 1.0]",
    "backbones": "write a list of distinct backbone names (medtl list), e.g. backbones: [smallcnn, resnet18]",
    "strategies": "write a list of distinct strategy names (medtl list), e.g. strategies: [full, linear]",
    "sources": "give each source either `weights: scratch|imagenet|file:<path>|run:<id>` or "
               "`pretrain: {dataset: ...}`, not both",
    "image_size": "write a whole number of pixels or 'native'",
    "throughput": "use batch_size >= 1, warmup >= 0, batches >= 1, memory_format auto|channels_last|contiguous, "
                  "pipeline auto|cpu|device, compile true|false",
    "precision": "use one of Lightning's precisions, e.g. 32-true or bf16-mixed",
    "devices": "write an integer >= 1",
    "num_workers": "write an integer >= 0 (DataLoader worker processes) or auto",
    "save_checkpoints": "write true or false",
    "transferability": "write true or false",
    "extra_train": "give a list of {dataset: NAME, path: FOLDER-UNDER-DATA-ROOT, options: {...}, classes: [TARGET-CLASS, ...]}",
    "external": "give a list of {name: NAME, dataset: NAME, path: FOLDER-UNDER-DATA-ROOT, options: {...}} or "
                "{name: NAME, split: official}, each name once",
    "target": "give target: {dataset: NAME, path: FOLDER-UNDER-DATA-ROOT, options: {...}, extra_train: [...], external: [...]}",
    "pretrain": "give pretrain: {dataset: NAME, path: ..., options: {...}, weights: ..., folds: ..., hparams: {...}}",
    "hparams": "write a mapping of hyperparameter names to values (tasks/training/hparams.py)",
    "repeats": "write repeats: {until: decided, max_seeds: N} with N above the number of seeds, on a k-fold suite",
    "grid": "write a mapping of hyperparameter names to lists of distinct values, e.g. grid: {vlad_k: [64, 256]}, and "
            "leave those names out of 'hparams'",
    "positive_class": "write the name of one class of the binary target, e.g. positive_class: pneumonia",
}
TOP_KEYS = tuple(SuiteModel.model_fields)


def _fix(loc: tuple, kind: str) -> str:
    if kind == "extra_forbidden":
        return "delete the key or correct its spelling"
    if kind == "missing":
        return f"add '{loc[-1]}'"
    for part in reversed(loc):
        if isinstance(part, str) and part in FIXES:
            return FIXES[part]
    return "see the schema in benchmark/plan/suite.py"


def _where(loc: tuple) -> str:
    # pydantic adds the branch of a union it tried ("int", "literal['official']"); the user wrote neither.
    parts = [p for p in loc if not (isinstance(p, str) and (p.startswith(("literal[", "constrained-")) or p in ("int", "str")))]
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in parts).replace(".[", "[") or "(top level)"


class SuiteError(ValueError):
    """A suite file that cannot be expanded; the message names the file and the key."""


def parse_suite(raw: dict, path: Path) -> SuiteModel:
    """The validated suite (every default filled in), or SuiteError with one line per bad value."""
    unknown = set(raw) - set(TOP_KEYS)
    if unknown:  # one line naming every valid key beats one "unknown key" line per misspelling
        raise SuiteError(f"{path}: unknown keys {sorted(map(str, unknown))}. Valid keys: {', '.join(sorted(TOP_KEYS))}. "
                         "Fix: delete them or correct their spelling.")
    try:
        return SuiteModel.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(error_message(path, _error_lines(exc))) from None


def _error_lines(exc: ValidationError) -> list[str]:
    """One line per bad value of the suite mapping: `key.path: what (got value). Fix: how`."""
    lines, seen = [], set()
    for err in exc.errors(include_url=False):
        where = _where(err["loc"])
        if where in seen:  # one line per key, not one per union branch tried
            continue
        seen.add(where)
        msg = err["msg"].removeprefix("Value error, ")
        got = "" if err["type"] in ("missing",) else f" (got {err['input']!r})"
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{where}: {msg}{got}. Fix: {_fix(tuple(err['loc']), err['type'])}.")
    return lines


def error_message(path: Path, lines: list[str]) -> str:
    shown = "\n  ".join(lines[:SHOWN])
    more = f"\n  ... and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
    return f"{path}: {len(lines)} invalid value(s); no cell was run:\n  {shown}{more}"
