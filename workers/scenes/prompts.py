"""The scene prompt set: loaded from YAML, validated, hashed. No torch here.

A prompt set may carry what `backfire calibrate` and `backfire scenes fit` learnt on a user's
labelled posts: a per-scene `scale` on the margin and `bias` (Platt scaling), optional isotonic
knots, a few-shot `head` (a direction in the image-embedding space, in a safetensors file beside
the YAML, named with its sha256) and the `calibration` provenance, which names the model the
values were fitted for: they mean nothing for another model (`check_model`).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from workers.errors import ConfigError

SceneGroup = Literal["force", "friendly", "police", "off_topic"]


class HeadRef(BaseModel):
    """Where a scene's few-shot head lives and what it was fitted on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: safetensors file, relative to the YAML's folder.
    file: str
    #: sha256 of the file: part of the prompt-set hash, so a changed head changes the
    #: pipeline_version; checked when the head is loaded.
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: Weight of the probe against the prompts' text direction (0 = zero-shot only).
    blend: float = Field(ge=0.0, le=1.0)
    examples: int = Field(ge=1)
    positives: int = Field(ge=1)


class Scene(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group: SceneGroup
    threshold: float = Field(ge=0.0, le=1.0)
    prompts: list[str] = Field(min_length=1)
    contrast: list[str] = Field(default_factory=list)
    #: Added to the scene's logit before the sigmoid; calibrates a scene on labelled samples.
    bias: float = 0.0
    #: Multiplies the model's logit scale for this scene (Platt scaling's slope); 1 = as the
    #: model says.
    scale: float = Field(1.0, gt=0.0)
    #: Isotonic map applied to the probability after the sigmoid: (p_in, p_out) knots, both
    #: increasing; fitted only on scenes with many labelled positives.
    isotonic: list[tuple[float, float]] | None = None
    #: A few-shot head replacing the prompts' direction (`backfire scenes fit`).
    head: HeadRef | None = None

    @field_validator("isotonic")
    @classmethod
    def _knots_increasing(
        cls, v: list[tuple[float, float]] | None
    ) -> list[tuple[float, float]] | None:
        if v is not None:
            xs, ys = [k[0] for k in v], [k[1] for k in v]
            if len(v) < 2 or xs != sorted(xs) or ys != sorted(ys):
                raise ValueError("isotonic needs two or more (p_in, p_out) knots, increasing")
        return v


class Calibration(BaseModel):
    """Provenance of fitted values: which model, on what sample, when, with what figures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str
    fitted_at: str
    tool: str
    source: str
    samples: int
    #: Per scene: what was done and the cross-validated before/after figures.
    scenes: dict[str, dict[str, Any]] = Field(default_factory=dict)


class PromptSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    templates: list[str] = Field(min_length=1)
    common_contrast: list[str] = Field(default_factory=list)
    scenes: dict[str, Scene] = Field(min_length=1)
    calibration: Calibration | None = None
    #: The folder of the YAML file (few-shot head files are found relative to it).
    _base_dir: Path | None = PrivateAttr(default=None)

    @field_validator("templates")
    @classmethod
    def _templates_have_slot(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t.count("{}") != 1]
        if bad:
            raise ValueError(f"each template needs exactly one '{{}}' slot: {bad}")
        return v

    @field_validator("scenes")
    @classmethod
    def _scenes_complete(cls, v: dict[str, Scene]) -> dict[str, Scene]:
        for name in v:
            if not name.isidentifier():
                raise ValueError(f"scene name {name!r} must be a plain identifier")
        return v

    @cached_property
    def hash(self) -> str:
        canonical = json.dumps(self.canonical(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def canonical(self) -> dict[str, Any]:
        """What is hashed. Fields added after version 1 are left out while at their defaults,
        so a prompt file written before them keeps its hash (and its stored verdicts)."""
        d = self.model_dump(mode="json")
        for scene in d["scenes"].values():
            for key, default in (("scale", 1.0), ("isotonic", None), ("head", None)):
                if scene.get(key) == default:
                    scene.pop(key, None)
        if d.get("calibration") is None:
            d.pop("calibration", None)
        return d

    @property
    def base_dir(self) -> Path | None:
        return self._base_dir

    def replaced(
        self, scenes: dict[str, Scene] | None = None, calibration: Calibration | None = None
    ) -> PromptSet:
        """A validated copy with other scenes and/or calibration, in the same folder. (Not
        `model_copy`: it would carry the cached hash of the original over.)"""
        data = self.model_dump(mode="json")
        if scenes is not None:
            data["scenes"] = {n: s.model_dump(mode="json") for n, s in scenes.items()}
        if calibration is not None:
            data["calibration"] = calibration.model_dump(mode="json")
        out = PromptSet.model_validate(data)
        out._base_dir = self._base_dir
        return out

    def head_path(self, name: str) -> Path:
        head = self.scenes[name].head
        assert head is not None
        return (self._base_dir or Path.cwd()) / head.file

    def check_model(self, model_id: str, where: str = "The scene file") -> None:
        """Refuse values fitted for another model: a bias or a head learnt on one model's
        embeddings is noise on another's."""
        fitted = self.calibration.model_id if self.calibration is not None else None
        if fitted is not None and fitted != model_id:
            raise ConfigError(
                f"{where} was calibrated for the model {fitted!r}, but this run uses "
                f"{model_id!r}: its biases, thresholds and heads do not apply to another model. "
                "Calibrate again with this model (`backfire calibrate` on the original "
                "scenes.yaml), or choose the model it was fitted for."
            )

    def to_yaml(self, header: str = "") -> str:
        """The prompt set as YAML (fields added after version 1 only when set)."""
        d = self.canonical()
        body = yaml.safe_dump(d, sort_keys=False, allow_unicode=True, width=100)
        lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
        return lines + body

    @property
    def names(self) -> list[str]:
        return list(self.scenes)

    def expand(self, descriptions: list[str]) -> list[str]:
        return [t.format(d) for d in descriptions for t in self.templates]

    def positive_texts(self, name: str) -> list[str]:
        return self.expand(self.scenes[name].prompts)

    def contrast_texts(self, name: str) -> list[str]:
        return self.expand(self.scenes[name].contrast + self.common_contrast)

    def in_group(self, group: SceneGroup) -> list[str]:
        return [n for n, s in self.scenes.items() if s.group == group]


def load_prompt_set(path: Path) -> PromptSet:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"Scene prompt file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"Scene prompt file {path} is not valid YAML: {e}") from e
    try:
        ps = PromptSet.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"Scene prompt file {path} is invalid:\n{e}") from e
    ps._base_dir = Path(path).resolve().parent
    for name, scene in ps.scenes.items():
        if not scene.contrast and not ps.common_contrast:
            raise ConfigError(
                f"Scene {name!r} in {path} has no contrast prompts and there is no "
                "common_contrast: its probability would always be 1."
            )
    return ps


def save_prompt_set(ps: PromptSet, path: Path, header: str = "") -> None:
    """Write `ps` to `path` (write-then-rename). Few-shot head files it names are copied beside
    it when they live elsewhere, so the YAML and its heads travel together."""
    import os
    import shutil
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, scene in ps.scenes.items():
        if scene.head is None:
            continue
        src = ps.head_path(name)
        dst = path.resolve().parent / scene.head.file
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
    text = ps.to_yaml(header)
    PromptSet.model_validate(yaml.safe_load(text))  # what is written must load back
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".yaml.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
