"""The scene prompt set: loaded from YAML, validated, hashed. No torch here."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workers.errors import ConfigError

SceneGroup = Literal["force", "friendly", "police", "off_topic"]


class Scene(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group: SceneGroup
    threshold: float = Field(ge=0.0, le=1.0)
    prompts: list[str] = Field(min_length=1)
    contrast: list[str] = Field(default_factory=list)
    #: Added to the scene's logit before the sigmoid; calibrates a scene on labelled samples.
    bias: float = 0.0


class PromptSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    templates: list[str] = Field(min_length=1)
    common_contrast: list[str] = Field(default_factory=list)
    scenes: dict[str, Scene] = Field(min_length=1)

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
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

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
    for name, scene in ps.scenes.items():
        if not scene.contrast and not ps.common_contrast:
            raise ConfigError(
                f"Scene {name!r} in {path} has no contrast prompts and there is no "
                "common_contrast: its probability would always be 1."
            )
    return ps
