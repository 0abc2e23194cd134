"""Few-shot scene heads on disk: one direction in the image-embedding space per file.

A head is a safetensors file (no pickle) beside the scene YAML, holding `direction` (float32,
one row the width of the model's embeddings) and in its metadata the model id it was fitted on.
The YAML names the file with its sha256, so the prompt-set hash (and with it the
pipeline_version) changes whenever the head does, and a swapped file is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workers.errors import ConfigError
from workers.hashing import file_sha256
from workers.scenes.prompts import PromptSet

FORMAT = "backfire-scene-head/1"


def save_head(path: Path, direction: np.ndarray, model_id: str, scene: str) -> str:
    """Write the head; returns the file's sha256."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"direction": np.ascontiguousarray(direction, dtype=np.float32).reshape(1, -1)}
    save_file(tensors, str(path), metadata={"format": FORMAT, "model_id": model_id,
                                             "scene": scene})  # fmt: skip
    return file_sha256(path)


def load_head(prompts: PromptSet, name: str, model_id: str, dim: int) -> np.ndarray:
    """The scene's head direction, checked against the YAML's sha256, the model and the width."""
    from safetensors import safe_open

    ref = prompts.scenes[name].head
    assert ref is not None
    path = prompts.head_path(name)
    if not path.is_file():
        raise ConfigError(
            f"The few-shot head of scene {name!r} is missing: {path} (it is written beside the "
            "scene YAML by `backfire scenes fit`; copy it along with the YAML)."
        )
    if file_sha256(path) != ref.sha256:
        raise ConfigError(
            f"The few-shot head file {path} of scene {name!r} is not the one its YAML names "
            "(sha256 differs): run `backfire scenes fit` again rather than editing either."
        )
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            direction = f.get_tensor("direction")
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise ConfigError(f"Cannot read the few-shot head {path}: {e}") from e
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a Backfire scene head ({meta.get('format')!r}).")
    if meta.get("model_id") != model_id:
        raise ConfigError(
            f"The few-shot head of scene {name!r} was fitted for the model "
            f"{meta.get('model_id')!r}, but this run uses {model_id!r}; fit it again with "
            "this model."
        )
    vec = np.asarray(direction, dtype=np.float32).reshape(-1)
    if vec.shape[0] != dim:
        raise ConfigError(f"The head {path} has width {vec.shape[0]}, the model {dim}.")
    return vec
