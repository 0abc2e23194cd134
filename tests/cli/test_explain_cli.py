"""`backfire explain` as a user runs it to tune verdict.yaml: the verdict, its confidence and
every term of the policy for a caption over scene probabilities they give."""

from __future__ import annotations

import json


def test_explain_prints_every_term_of_the_policy(run_cli):
    res = run_cli("explain", "--caption", "Thanks NYPD for keeping us safe",
                  "--scene", "restraint=0.4", "--scene", "police_present_neutral=0.8",
                  env={"BACKFIRE_CAPTION_MODEL_FILE": ""})  # the shipped model, with stance
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("verdict ")
    for name in ("force", "critical_over_police", "mock_praise_over_police", "incongruity",
                 "friendly", "sincere_over_police", "p_critical", "p_supportive",
                 "critical_evidence", "supportive_evidence", "sarcasm_evidence", "mock_praise",
                 "warmth", "police_presence"):
        assert f"  {name} " in out, name
    assert "scenes  restraint 0.40, police_present_neutral 0.80" in out
    assert "backlash = 1 - prod(1 - weight x term) = " in out
    assert "caption supportive of the police" in out  # the reasons, as a row carries them
    assert "verdict backlash" not in out  # sincere thanks over an ambiguous photo


def test_explain_json_and_a_policy_file_of_your_own(run_cli, tmp_path):
    from workers.config import MODEL_CARDS_DIR

    mine = tmp_path / "mine.yaml"
    mine.write_text((MODEL_CARDS_DIR / "verdict.yaml").read_text().replace(
        "critical_over_police: 0.75", "critical_over_police: 0.0"))
    args = ["explain", "--json", "--caption",
            "Watched officers drag a woman out of her car for nothing. Sickening.",
            "--scene", "police_present_neutral=0.9"]
    shipped = json.loads(run_cli(*args, env={"BACKFIRE_CAPTION_MODEL_FILE": ""}).stdout)
    res = run_cli(*args, "--policy", str(mine), env={"BACKFIRE_CAPTION_MODEL_FILE": ""})
    assert res.returncode == 0, res.stderr
    tuned = json.loads(res.stdout)
    assert shipped["verdict"] == "backlash" and tuned["verdict"] != "backlash"
    term = {t["name"]: t for t in tuned["backlash_terms"]}["critical_over_police"]
    assert term["weight"] == 0.0 and term["value"] > 0.5
    assert tuned["caption_scores"]["stance"]["label"] == "critical"


def test_explain_without_a_stance_model_says_what_stood_in(run_cli):
    res = run_cli("explain", "--caption", "I hate these cops", "--scene",
                  "police_present_neutral=0.9")  # the v1 caption model of these tests
    assert res.returncode == 0, res.stderr
    assert "stance from" in res.stdout and "sentiment (no stance head)" in res.stdout
    assert "caption negative 0.57 (no stance model)" in res.stdout


def test_explain_refuses_unknown_scenes_and_bad_values_clearly(run_cli):
    res = run_cli("explain", "--caption", "x", "--scene", "riot=0.5")
    assert res.returncode == 2
    assert "--scene takes NAME=PROBABILITY" in res.stderr and "restraint" in res.stderr
    res = run_cli("explain", "--caption", "x", "--scene", "restraint=1.5")
    assert res.returncode == 2 and "must be a number in [0, 1]" in res.stderr
    res = run_cli("explain", "--scene", "restraint=0.5")
    assert res.returncode == 2 and "give --caption" in res.stderr
    res = run_cli("explain", "--post-id", "nope")
    assert res.returncode == 2 and "There is no post 'nope'" in res.stderr
    assert "Traceback" not in res.stderr
