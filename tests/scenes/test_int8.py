"""The int8 image tower on the tiny real open_clip architecture: what it changes for a user
(the model id, the pipeline version, near-identical embeddings) and its cache (built once,
rebuilt when damaged, keyed by the weights)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

from tests.support.fakes import make_tiny_clip
from workers.errors import ConfigError
from workers.scenes import int8
from workers.scenes.encoder import ClipEncoder


def _pictures(encoder: ClipEncoder) -> list:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)) for _ in range(6)]
    return [encoder.prepare(im) for im in images]


def _int8(settings):
    return settings.model_copy(update={"image_precision": "int8"})


def test_int8_tower_says_so_in_its_model_id_and_stays_close_to_float32(tiny_settings):
    f32, i8 = ClipEncoder(tiny_settings), ClipEncoder(_int8(tiny_settings))
    assert i8.model_id == f32.model_id + "-int8"
    layers = [m for m in i8.model.visual.modules() if type(m) is nn.Linear]
    assert layers == []  # every linear layer of the tower (attention included) is int8
    pics = _pictures(f32)
    a, b = f32.encode_images(pics), i8.encode_images(pics)
    cosine = (a * b).sum(1)
    assert cosine.min() > 0.99
    assert not np.array_equal(a, b)  # it really runs other arithmetic
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    # The text tower (prompt embeddings) is untouched: same prompts, same vectors.
    t32, t8 = f32.encode_texts(["a photo of an arrest"]), i8.encode_texts(["a photo of an arrest"])
    assert np.array_equal(t32, t8)


def test_int8_tower_is_built_once_then_loaded_from_the_cache(tiny_settings, monkeypatch, caplog):
    settings = _int8(tiny_settings)
    with caplog.at_level(logging.WARNING, "backfire.scenes"):
        first = ClipEncoder(settings)
    assert "Building the int8 image tower" in caplog.text
    [cached] = (settings.cache_dir / "int8").glob("*.safetensors")
    assert int8.ENGINE in cached.name

    def no_quantising(visual):  # a second start must not quantise again
        raise AssertionError("quantised again although the cache holds this model")

    monkeypatch.setattr(int8, "_quantize", no_quantising)
    caplog.clear()
    with caplog.at_level(logging.WARNING, "backfire.scenes"):
        second = ClipEncoder(settings)
    assert "Building" not in caplog.text
    pics = _pictures(first)
    assert np.array_equal(first.encode_images(pics), second.encode_images(pics))


def test_a_damaged_cache_file_is_rebuilt_not_used(tiny_settings, caplog):
    settings = _int8(tiny_settings)
    good = ClipEncoder(settings)
    [cached] = (settings.cache_dir / "int8").glob("*.safetensors")
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, "backfire.scenes"):
        again = ClipEncoder(settings)
    assert "unreadable" in caplog.text and "Building" in caplog.text
    pics = _pictures(good)
    assert np.array_equal(good.encode_images(pics), again.encode_images(pics))
    assert cached.stat().st_size > 0 and int8._load  # rewritten whole


def test_other_weights_get_their_own_cache_entry(tiny_settings, tmp_path):
    _, other = make_tiny_clip(tmp_path / "other", seed=1)
    a = ClipEncoder(_int8(tiny_settings))
    b = ClipEncoder(_int8(tiny_settings.model_copy(update={"checkpoint": other})))
    assert a.model_id != b.model_id
    assert len(list((tiny_settings.cache_dir / "int8").glob("*.safetensors"))) == 2
    pics = _pictures(a)
    assert not np.allclose(a.encode_images(pics), b.encode_images(pics), atol=1e-3)


def test_unsupported_image_tower_is_refused_clearly():
    with pytest.raises(ConfigError, match="ViT image towers.*Sequential.*float32"):
        int8.make_int8(nn.Sequential(nn.Linear(4, 4)), "RN-test", "RN-test@x-int8", "0" * 64,
                       Path("/nonexistent"))  # fmt: skip
