"""The int8 caption encoder cached as built (workers/caption/encoder/packed.py): a second start
reads it instead of building the float layers, scores exactly as the built one, and a cache file
that is damaged or made for another model is rebuilt, never used."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from workers.caption import SHIPPED_MODEL_FILE, load_model_file
from workers.caption.adapter import AdapterSarcasmModel

CAPTIONS = [
    "Thanks NYPD for keeping us safe",
    "Free delivery, only at #myNYPD",
    "they beat him for standing there",
    "RT @someone: nice day at the precinct open house 😂",
]


def _scores(model) -> list[tuple[float, object]]:
    return [(s.sarcasm, s.stance) for s in model.score_batch(CAPTIONS)]


def _load(folder: Path, packed: Path) -> AdapterSarcasmModel:
    return AdapterSarcasmModel.load(SHIPPED_MODEL_FILE, folder, precision="int8",
                                    packed_dir=packed)


def _no_building(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, building the float encoder or quantising it fails the test."""
    import workers.caption.adapter as adapter
    import workers.caption.encoder.quantize as quantize

    def refuse(*_a, **_k):
        raise AssertionError("the int8 encoder was built although the cache holds it")

    monkeypatch.setattr(adapter, "build_encoder", refuse)
    monkeypatch.setattr(quantize, "quantize_int8", refuse)


@pytest.fixture(scope="module")
def built(tmp_path_factory, caption_encoder_cache: Path):
    """The shipped model built once in int8 into an empty cache: (folder, cache file, scores)."""
    packed = tmp_path_factory.mktemp("packed")
    model = _load(caption_encoder_cache, packed)
    files = list(packed.iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors", files
    return caption_encoder_cache, files[0], model.model_id, _scores(model)


def test_a_second_start_reads_the_cache_and_scores_exactly_as_the_built_model(
    built, monkeypatch
) -> None:
    folder, file, model_id, want = built
    _no_building(monkeypatch)
    model = _load(folder, file.parent)
    assert model.model_id == model_id and model_id.endswith("-int8")
    assert model.precision == "int8"
    assert _scores(model) == want  # exactly: the same int8 weights, scales and kernels
    assert model.documented_validation() is not None  # the int8 figures of the model card


@pytest.mark.parametrize("damage", ["truncated", "other-model", "not-safetensors"])
def test_a_damaged_or_foreign_cache_file_is_rebuilt_never_used(
    built, tmp_path, damage, caplog
) -> None:
    folder, file, model_id, want = built
    packed = tmp_path / "packed"
    packed.mkdir()
    copy = packed / file.name
    if damage == "truncated":
        copy.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif damage == "other-model":
        from workers.caption.encoder.packed import save_packed

        save_packed(_load(folder, file.parent).encoder, copy, "caption-sarcasm-v9-int8")
    else:
        copy.write_bytes(b"not a safetensors file at all")
    with caplog.at_level(logging.WARNING, logger="backfire.caption"):
        model = _load(folder, packed)
    assert any("rebuilding it" in r.getMessage() for r in caplog.records), caplog.text
    assert _scores(model) == want
    assert copy.stat().st_size == file.stat().st_size  # replaced by a good one


def test_the_loader_that_commands_use_keeps_its_cache_in_cache_dir(
    tmp_path, caption_encoder_cache
) -> None:
    from workers.caption import PACKED_DIR

    cache = tmp_path / "cache"
    (cache / caption_encoder_cache.relative_to(caption_encoder_cache.parents[1])).parent.mkdir(
        parents=True)
    (cache / caption_encoder_cache.relative_to(caption_encoder_cache.parents[1])).symlink_to(
        caption_encoder_cache, target_is_directory=True)  # the base only, not the int8 cache
    model = load_model_file(SHIPPED_MODEL_FILE, cache_dir=cache, precision="int8")
    assert [p.suffix for p in (cache / PACKED_DIR).iterdir()] == [".safetensors"]
    assert model.model_id.endswith("-int8")
