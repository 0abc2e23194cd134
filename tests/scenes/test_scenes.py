"""The real open_clip loading, prompt caching and batching code, on a tiny random architecture."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import image_bytes
from workers.config import MODEL_CARDS_DIR
from workers.errors import ConfigError, WeightsMissing
from workers.scoring.pipeline import Pipeline


def test_batch_of_8_equals_8_singles(tiny_settings):
    pipe = Pipeline.from_settings(tiny_settings.model_copy(update={"batch_size": 8}))
    colours = [(i * 30, 255 - i * 30, (i * 70) % 255) for i in range(8)]
    prepared = [
        pipe.prepare(image_bytes(c, size=(200 + 10 * i, 150))) for i, c in enumerate(colours)
    ]
    batched = pipe.encoder.encode_images([p.tensor for p in prepared])
    singles = np.concatenate([pipe.encoder.encode_images([p.tensor]) for p in prepared])
    assert batched.shape == (8, 32)
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    probs_b = pipe.scene_probabilities(prepared)
    pipe.settings = pipe.settings.model_copy(update={"batch_size": 1})
    probs_s = pipe.scene_probabilities(prepared)
    for a, b in zip(probs_b, probs_s, strict=True):
        assert a.keys() == b.keys()
        assert all(abs(a[k] - b[k]) < 1e-5 for k in a)


def test_model_is_in_eval_mode_and_deterministic(tiny_settings):
    pipe = Pipeline.from_settings(tiny_settings)
    assert not pipe.encoder.model.training
    p = pipe.prepare(image_bytes((10, 20, 30)))
    a = pipe.encoder.encode_images([p.tensor])
    b = pipe.encoder.encode_images([p.tensor])
    np.testing.assert_array_equal(a, b)
    assert abs(float(np.linalg.norm(a[0])) - 1.0) < 1e-5


def test_prompt_cache_hit_on_second_run(tiny_settings):
    first = Pipeline.from_settings(tiny_settings)
    assert not first.scenes.cache_hit
    cached = list((tiny_settings.cache_dir / "prompt-embeddings").glob("*.npz"))
    assert len(cached) == 1
    second = Pipeline.from_settings(tiny_settings)
    assert second.scenes.cache_hit
    np.testing.assert_array_equal(first.scenes.positive, second.scenes.positive)
    assert first.version == second.version


def test_changed_prompt_file_changes_version_and_misses_cache(tiny_settings, tmp_path):
    base = Pipeline.from_settings(tiny_settings)
    text = (MODEL_CARDS_DIR / "scenes.yaml").read_text()
    changed = tmp_path / "scenes.yaml"
    changed.write_text(text.replace("police officers arresting a person", "an arrest in progress"))
    other = Pipeline.from_settings(tiny_settings.model_copy(update={"scenes_file": changed}))
    assert not other.scenes.cache_hit
    assert other.version != base.version
    assert len(list((tiny_settings.cache_dir / "prompt-embeddings").glob("*.npz"))) == 2


def test_changed_checkpoint_changes_version(tiny_settings, tmp_path):
    from tests.support.fakes import make_tiny_clip

    _, other_ckpt = make_tiny_clip(tmp_path / "other", seed=1)
    a = Pipeline.from_settings(tiny_settings)
    b = Pipeline.from_settings(tiny_settings.model_copy(update={"checkpoint": other_ckpt}))
    assert a.version != b.version


def test_missing_pretrained_weights_offline_says_how_to_get_them(settings):
    with pytest.raises(WeightsMissing) as ei:
        Pipeline.from_settings(settings.model_copy(update={"offline": True}))
    msg = ei.value.message
    assert "backfire model pull" in msg and "--checkpoint" in msg and "BACKFIRE_CACHE_DIR" in msg


def test_missing_checkpoint_file(settings, tmp_path):
    with pytest.raises(WeightsMissing, match="not found"):
        Pipeline.from_settings(settings.model_copy(update={"checkpoint": tmp_path / "no.pt"}))


def test_checkpoint_for_another_architecture_is_refused_not_random(settings, tiny_clip):
    """Strict loading: tiny weights into ViT-B-32 must fail loudly, never run half-random."""
    from workers.errors import ModelError

    _, ckpt = tiny_clip
    with pytest.raises(ModelError, match="Could not load weights"):
        Pipeline.from_settings(settings.model_copy(update={"checkpoint": ckpt}))


def test_unknown_pretrained_tag(settings):
    with pytest.raises(ConfigError, match="not a pretrained tag"):
        Pipeline.from_settings(settings.model_copy(update={"pretrained": "nonsense"}))


def test_invalid_prompt_file_is_a_clear_error(tiny_settings, tmp_path):
    bad = tmp_path / "scenes.yaml"
    bad.write_text("version: 1\ntemplates: ['no slot']\nscenes: {}\n")
    with pytest.raises(ConfigError, match="invalid"):
        Pipeline.from_settings(tiny_settings.model_copy(update={"scenes_file": bad}))


def test_lean_loading_matches_open_clips_own_loader(tiny_settings):
    """Meta-device skeleton + assigned weights must give exactly what open_clip's
    create_model_from_pretrained gives for the same checkpoint (images and texts)."""
    import open_clip
    import torch

    pipe = Pipeline.from_settings(tiny_settings)
    ref, ref_pre = open_clip.create_model_from_pretrained(
        "TinyCLIP-test", pretrained=str(tiny_settings.checkpoint), weights_only=True
    )
    ref.eval()
    from workers.media.decode import decode_image

    img = decode_image(image_bytes((200, 40, 90), size=(300, 200)))
    ours = pipe.encoder.encode_images([pipe.encoder.prepare(img)])
    with torch.inference_mode():
        theirs = ref.encode_image(ref_pre(img).unsqueeze(0), normalize=True).numpy()
        tok = open_clip.get_tokenizer("TinyCLIP-test")(["a photo of an arrest."])
        text_ref = ref.encode_text(tok, normalize=True).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(
        pipe.encoder.encode_texts(["a photo of an arrest."]), text_ref, atol=1e-6
    )
    assert abs(pipe.encoder.logit_scale - float(ref.logit_scale.exp())) < 1e-6


def test_numpy_preprocess_equals_open_clip_transform():
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    from workers.scenes.preprocess import fast_preprocess

    cfg = {"size": 224, "mode": "RGB", "mean": (0.48145466, 0.4578275, 0.40821073),
           "std": (0.26862954, 0.26130258, 0.27577711), "interpolation": "bicubic",
           "resize_mode": "shortest", "fill_color": 0}  # fmt: skip
    ref = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    fast = fast_preprocess(cfg, ref)
    assert fast is not ref
    rng = np.random.default_rng(0)
    for w, h in [(750, 500), (500, 750), (224, 224), (225, 300), (1001, 333), (100, 80)]:
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        np.testing.assert_allclose(fast(img).numpy(), ref(img).numpy(), atol=1e-5)


def _register_tag(monkeypatch) -> None:
    """A pretrained tag for the tiny architecture, hosted (nowhere) on the HF hub like the real
    ViT-B-32 tags, so the tag → cache → load path runs for real without a network."""
    from open_clip import pretrained

    cfg = {"hf_hub": "backfire-test/tiny-clip/", "url": "", "quick_gelu": False}
    monkeypatch.setitem(pretrained._PRETRAINED, "TinyCLIP-test", {"cachetest": cfg})


def test_pretrained_tag_loads_from_offline_cache(tiny_settings, monkeypatch):
    import shutil

    _register_tag(monkeypatch)
    settings = tiny_settings.model_copy(update={"checkpoint": None, "pretrained": "cachetest"})
    with pytest.raises(WeightsMissing, match="not in the cache"):
        Pipeline.from_settings(settings)
    # Lay the file out exactly as huggingface_hub caches a download (what `backfire model pull`
    # leaves behind, and what an air-gapped site copies over).
    repo = settings.cache_dir / "open_clip" / "models--backfire-test--tiny-clip"
    rev = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    (repo / "snapshots" / rev).mkdir(parents=True)
    shutil.copy(tiny_settings.checkpoint, repo / "snapshots" / rev / "open_clip_model.safetensors")
    pipe = Pipeline.from_settings(settings)
    assert pipe.encoder.model_id == "TinyCLIP-test@cachetest"
    ref = Pipeline.from_settings(tiny_settings)
    p = pipe.prepare(image_bytes((1, 2, 3)))
    np.testing.assert_allclose(
        pipe.encoder.encode_images([p.tensor]), ref.encoder.encode_images([p.tensor]), atol=1e-6
    )


def test_unreachable_hub_fails_fast_with_instructions(tiny_settings, monkeypatch):
    import socket

    _register_tag(monkeypatch)

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    settings = tiny_settings.model_copy(
        update={"checkpoint": None, "pretrained": "cachetest", "offline": False}
    )
    with pytest.raises(WeightsMissing, match="cannot be reached") as ei:
        Pipeline.from_settings(settings)
    assert "backfire model pull" in ei.value.message


def test_text_pages_released_after_prompt_encoding_read_back_intact(tiny_settings):
    """A cold start encodes the prompts, then hands the text weights' pages back to the kernel
    (they are a read-only map of the checkpoint). Reading them again must give the same
    numbers; anonymous memory must never be released (it would read back as zeros)."""
    import torch

    from workers.scenes.loading import release_file_pages

    pipe = Pipeline.from_settings(tiny_settings)
    assert not pipe.scenes.cache_hit
    text_params = [
        p for n, p in pipe.encoder.model.named_parameters() if not n.startswith("visual")
    ]
    assert release_file_pages(text_params, str(tiny_settings.checkpoint)) > 0
    again = pipe.encoder.encode_texts(["a photo of an arrest."])
    fresh = Pipeline.from_settings(tiny_settings).encoder.encode_texts(["a photo of an arrest."])
    np.testing.assert_allclose(again, fresh, atol=1e-6)
    anon = torch.ones(100_000)
    assert release_file_pages([anon], str(tiny_settings.checkpoint)) == 0
    assert float(anon.sum()) == 100_000.0
