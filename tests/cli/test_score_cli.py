"""`backfire score` as a user runs it: exit codes, outputs, --resume, URLs, dedup."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.conftest import BLUE, GREEN, RED, image_bytes


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "posts"
    folder.mkdir()
    (folder / "arrest1.jpg").write_bytes(image_bytes(RED, size=(640, 480)))
    (folder / "arrest1.txt").write_text("Free Delivery, only at #myNYPD")
    (folder / "parade.png").write_bytes(image_bytes(GREEN, fmt="PNG"))
    (folder / "bagel.webp").write_bytes(image_bytes(BLUE, fmt="WEBP"))
    (folder / "captions.csv").write_text("post_id,caption\nparade,Lovely day at the parade\n")
    return folder


def test_folder_to_jsonl_all_good_exit_0(run_cli, tmp_path):
    folder = _folder(tmp_path)
    default_pipeline = {"BACKFIRE_CAPTION_MODEL_FILE": ""}  # the shipped caption model (v3)
    res = run_cli("score", str(folder), "--hashtag", "myNYPD", "--out", "v.jsonl",
                  env=default_pipeline)  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = _rows(tmp_path / "v.jsonl")
    assert sorted(r["post_id"] for r in rows) == ["arrest1", "bagel", "parade"]
    by_id = {r["post_id"]: r for r in rows}
    assert by_id["arrest1"]["caption_text"] == "Free Delivery, only at #myNYPD"
    assert by_id["parade"]["caption_text"] == "Lovely day at the parade"
    for r in rows:
        assert r["status"] == "ok" and r["verdict"] in (
            "backlash",
            "supportive",
            "neutral",
            "off_topic",
        )
        assert r["reasons"] and set(r["scenes"]) >= {"arrest", "restraint", "weapon_drawn"}
        assert r["pipeline_version"].startswith("bf1-") and r["hashtag"] == "myNYPD"
        assert r["caption"]["model"].startswith("caption-sarcasm-v3-")
    # The caption's stance toward the police travels in the row (none for a captionless post).
    assert by_id["parade"]["caption"]["stance"]["label"] in ("critical", "supportive", "neutral")
    assert by_id["bagel"]["caption"]["stance"] is None
    assert "Scored 3 of 3 posts" in res.stderr


def test_bad_post_exit_1_with_error_row_then_resume_skips_done(run_cli, tmp_path):
    folder = _folder(tmp_path)
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    res = run_cli("score", str(folder), "--out", "v.jsonl")
    assert res.returncode == 1, res.stderr
    rows = _rows(tmp_path / "v.jsonl")
    [bad] = [r for r in rows if r["post_id"] == "broken"]
    assert bad["status"] == "error" and bad["error"]["type"] == "image-unsupported-format"
    assert "1 failed" in res.stderr

    # Simulate a crash mid-write (torn last line) plus new posts, then resume.
    out = tmp_path / "v.jsonl"
    out.write_text(out.read_text() + '{"post_id": "half-writ')
    (folder / "late.jpg").write_bytes(image_bytes(RED, size=(300, 300)))
    res = run_cli("score", str(folder), "--out", "v.jsonl", "--resume")
    assert res.returncode == 0, res.stderr
    rows = _rows(out)
    ids = [r["post_id"] for r in rows]
    assert sorted(ids) == ["arrest1", "bagel", "broken", "late", "parade"]
    assert len(ids) == len(set(ids))
    assert "4 skipped (resume)" in res.stderr


def test_csv_manifest_to_csv_out_with_dedup(run_cli, tmp_path):
    (tmp_path / "same.jpg").write_bytes(image_bytes(RED))
    manifest = tmp_path / "posts.csv"
    manifest.write_text(
        "post_id,image,caption,created_at,author,hashtag\n"
        + "".join(f"p{i},same.jpg,caption {i},2014-04-22T18:0{i}:00Z,user{i},myNYPD\n"
                  for i in range(5))
    )  # fmt: skip
    res = run_cli("score", "posts.csv", "--format", "csv", "--out", "verdicts.csv")
    assert res.returncode == 0, res.stderr
    with open(tmp_path / "verdicts.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["post_id"] for r in rows] == [f"p{i}" for i in range(5)]
    assert {"verdict", "confidence", "reasons", "scene_restraint", "pipeline_version"} <= set(
        rows[0]
    )
    assert len({r["media_sha256"] for r in rows}) == 1
    assert "1 images decoded, 4 posts reused an image" in res.stderr


def test_usage_errors_exit_2(run_cli, tmp_path):
    res = run_cli("score", "does-not-exist.csv", "--out", "v.jsonl")
    assert res.returncode == 2 and "Input not found" in res.stderr
    res = run_cli("score", str(_folder(tmp_path)), "--resume")
    assert res.returncode == 2 and "--resume needs --out" in res.stderr
    res = run_cli("score", "--no-such-option")
    assert res.returncode == 2


def test_missing_weights_exit_2_with_instructions(run_cli, tmp_path):
    res = run_cli(
        "score", str(_folder(tmp_path)), "--out", "v.jsonl",
        env={"BACKFIRE_CHECKPOINT": "", "BACKFIRE_MODEL_CONFIG_FILE": ""},
    )  # fmt: skip
    assert res.returncode == 2
    assert "backfire model pull" in res.stderr and "--checkpoint" in res.stderr
    assert not (tmp_path / "v.jsonl").exists()


def test_url_images_private_refused_unless_allowed_and_capped(run_cli, tmp_path, http_folder):
    base, root = http_folder
    (root / "a.jpg").write_bytes(image_bytes(RED, size=(400, 300)))
    (root / "big.jpg").write_bytes(image_bytes(GREEN, size=(2000, 2000), quality=100))
    manifest = tmp_path / "posts.jsonl"
    manifest.write_text(
        json.dumps({"post_id": "u1", "image": f"{base}/a.jpg", "caption": "hi"})
        + "\n"
        + json.dumps({"post_id": "u2", "image": f"{base}/big.jpg"})
        + "\n"
    )
    cap = {"BACKFIRE_MAX_IMAGE_BYTES": str(len((root / "a.jpg").read_bytes()) + 1000)}

    res = run_cli("score", "posts.jsonl", "--out", "refused.jsonl", env=cap)
    assert res.returncode == 1
    rows = {r["post_id"]: r for r in _rows(tmp_path / "refused.jsonl")}
    assert rows["u1"]["error"]["type"] == "fetch-blocked-address"
    assert "loopback" in rows["u1"]["error"]["message"]

    res = run_cli(
        "score", "posts.jsonl", "--out", "allowed.jsonl", "--allow-private-network", env=cap
    )
    assert res.returncode == 1, res.stderr
    rows = {r["post_id"]: r for r in _rows(tmp_path / "allowed.jsonl")}
    assert rows["u1"]["status"] == "ok"
    assert rows["u2"]["error"]["type"] == "fetch-too-large"


def test_scenes_list_shows_labels_and_prompts(run_cli):
    res = run_cli("scenes", "list", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert {
        "arrest",
        "restraint",
        "weapon_drawn",
        "crowd_clash",
        "injury",
        "friendly",
        "police_present_neutral",
        "off_topic",
    } <= set(data["scenes"])
    assert data["scenes"]["restraint"]["contrast"] and data["hash"]
    res = run_cli("scenes", "list")
    assert res.returncode == 0 and "chokehold" in res.stdout


def test_score_help_has_an_example(run_cli):
    res = run_cli("score", "--help")
    assert res.returncode == 0 and "backfire score examples/myNYPD" in res.stdout


def test_score_cli_int8_changes_the_pipeline_version_and_refuses_a_bad_value(run_cli, tmp_path):
    folder = tmp_path / "posts"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(image_bytes(RED, size=(320, 240)))
    (folder / "a.txt").write_text("Lovely day at the parade")
    res32 = run_cli("score", str(folder), "--hashtag", "x", "--out", "f32.jsonl")
    res8 = run_cli("score", str(folder), "--hashtag", "x", "--out", "i8.jsonl",
                   "--image-precision", "int8")  # fmt: skip
    assert res32.returncode == 0 and res8.returncode == 0, res8.stderr
    [r32] = [json.loads(x) for x in (tmp_path / "f32.jsonl").read_text().splitlines()]
    [r8] = [json.loads(x) for x in (tmp_path / "i8.jsonl").read_text().splitlines()]
    assert r8["status"] == r32["status"] == "ok"
    assert r8["pipeline_version"] != r32["pipeline_version"]  # never mixed in a store
    assert set(r8["scenes"]) == set(r32["scenes"])
    for name, p in r32["scenes"].items():
        assert abs(r8["scenes"][name] - p) < 0.05, name

    bad = run_cli("score", str(folder), "--hashtag", "x", "--image-precision", "fp16")
    assert bad.returncode == 2
    assert "Unknown image precision 'fp16'" in bad.stderr and "Traceback" not in bad.stderr
