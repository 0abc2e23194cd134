"""The `backfire eval --out eval.html` page as a person sees it, in a real headless Chromium,
offline: one precision-recall curve and one reliability diagram per labelled scene, the page's
numbers equal to the `--json` figures, blurred thumbnails of the worst mistakes, and no
request leaving the page."""

from __future__ import annotations

import json

import pytest

from tests.support.browser import Browser, find_chromium
from tests.support.fakes import write_labelled
from workers.cli.evaluate import Source, run_eval

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed")

LABELLED = ("arrest", "restraint", "weapon_drawn", "friendly", "off_topic")


@pytest.fixture
def page(tmp_path, eval_settings, encoder, names, console, capsys):
    path = write_labelled(tmp_path / "lab", names, 160, seed=5, scenes=LABELLED)
    # Verdict labels on some rows, so the confusion matrix shows too.
    lines = path.read_text().splitlines()
    head, rows = lines[0] + ",verdict", lines[1:]
    rows = [r + ("," + ("backlash" if "restraint" in r else "neutral") if i % 2 else ",")
            for i, r in enumerate(rows)]  # fmt: skip
    path.write_text("\n".join([head, *rows]) + "\n")
    out = tmp_path / "eval.html"
    result = run_eval(eval_settings, Source(path), console, out=out, as_json=True, rounds=50,
                      encoder=encoder)  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(out.as_uri())
        yield printed, result, out, browser
    finally:
        browser.close()


def test_one_curve_per_labelled_scene_and_numbers_equal_the_json(page):
    printed, result, _out, b = page
    assert printed["scenes"].keys() == result["scenes"].keys()
    scenes = set(printed["scenes"])
    assert scenes == set(page[1]["scenes"]) and len(scenes) == 8  # every scene is labelled
    curves = b.eval("[...document.querySelectorAll('svg.pr-curve')].map(s => s.dataset.scene)")
    diagrams = b.eval(
        "[...document.querySelectorAll('svg.reliability')].map(s => s.dataset.scene)"
    )
    assert sorted(curves) == sorted(scenes) and sorted(diagrams) == sorted(scenes)
    # Every curve is drawn from the JSON's points.
    points = b.eval("Object.fromEntries([...document.querySelectorAll('svg.pr-curve')]"
                    ".map(s => [s.dataset.scene, +s.dataset.points]))")  # fmt: skip
    assert points == {n: len(s["pr_curve"]) for n, s in printed["scenes"].items()}
    shown = b.eval(
        "Object.fromEntries([...document.querySelectorAll('table.scenes-eval tbody tr')].map("
        "tr => [tr.dataset.scene, Object.fromEntries([...tr.querySelectorAll('td[data-metric]')]"
        ".map(td => [td.dataset.metric, td.textContent]))]))"
    )
    for name, s in printed["scenes"].items():
        for metric, text in shown[name].items():
            want = s[metric]
            if want is None:
                assert text == "–"
            else:
                assert float(text) == pytest.approx(want, abs=1e-9), (name, metric)
    macro = b.eval("document.querySelector('#verdicts [data-metric=macro_f1]').textContent")
    assert float(macro) == pytest.approx(printed["verdicts"]["macro_f1"])
    # Bootstrap intervals are on the page too.
    assert "F1 95 % CI" in b.eval("document.querySelector('table.scenes-eval').textContent")


def test_worst_mistakes_are_blurred_thumbnails_and_nothing_leaves_the_page(page):
    printed, _result, out, b = page
    items = b.eval("[...document.querySelectorAll('#mistakes li.mistake')].map(li => "
                   "li.dataset.postId)")  # fmt: skip
    assert items == [m["post_id"] for m in printed["mistakes"]] and items
    imgs = b.eval(
        "[...document.querySelectorAll('#mistakes img')].map(i => ({ok: i.complete && "
        "i.naturalWidth > 0, src: i.src.slice(0, 23), filter: getComputedStyle(i).filter}))"
    )
    assert imgs and all(i["ok"] and i["src"] == "data:image/jpeg;base64," for i in imgs)
    assert all("blur" in i["filter"] for i in imgs)
    b.click("#mistakes label.thumb.sensitive")
    assert b.eval("getComputedStyle(document.querySelector('#mistakes img')).filter") == "none"
    urls = b.requests()
    assert urls and all(u.startswith(("data:", out.as_uri())) for u in urls), urls
    assert b.eval("document.scripts.length") == 0
    csp = b.eval("document.querySelector('meta[http-equiv=Content-Security-Policy]').content")
    assert "default-src 'none'" in csp
