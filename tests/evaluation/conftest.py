"""A fake encoder whose image embeddings depend on known labels plus noise (tests/support/fakes.py
`LatentSceneEncoder`), a deliberately mis-set copy of the shipped scenes.yaml, and labelled
CSV files of Pillow-made pictures that encode their labels."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from tests.support.fakes import LatentSceneEncoder
from workers.config import MODEL_CARDS_DIR, Settings
from workers.scenes.prompts import load_prompt_set

#: Mis-set biases: restraint fires on almost anything, arrest almost never.
MIS_SET = {"restraint": 6.0, "arrest": -3.0}


@pytest.fixture
def misset_yaml(tmp_path: Path) -> Path:
    data = yaml.safe_load((MODEL_CARDS_DIR / "scenes.yaml").read_text())
    for name, bias in MIS_SET.items():
        data["scenes"][name]["bias"] = bias
    path = tmp_path / "misset" / "scenes.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def eval_settings(settings: Settings, misset_yaml: Path) -> Settings:
    # Caption side: the v0 rules (milliseconds); these tests are about scenes.
    return settings.model_copy(
        update={"scenes_file": misset_yaml, "caption_model_file": Path("cues-v0")}
    )


@pytest.fixture
def encoder(misset_yaml: Path) -> LatentSceneEncoder:
    return LatentSceneEncoder(load_prompt_set(misset_yaml))


@pytest.fixture
def names(misset_yaml: Path) -> list[str]:
    return load_prompt_set(misset_yaml).names


@pytest.fixture
def console() -> Console:
    return Console(file=io.StringIO(), width=160)
