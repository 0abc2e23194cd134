"""The report as a person sees it: rendered by a real headless Chromium, offline.

One generated run of a few hundred posts → `backfire report` → Chromium opens the file; the DOM
is checked against the input, the thumbnails against their data URIs and the blur, and the
network log for any request leaving the page.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.browser import Browser, find_chromium
from tests.support.report_gen import make_run
from workers.cli.app import app

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="chromium is not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("report")
    run = make_run(root, n=300, hours=30)
    out = root / "report.html"
    result = CliRunner().invoke(app, ["report", str(run.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    browser = Browser(root / "profile")
    try:
        browser.open(out.as_uri())
        yield run, out, browser
    finally:
        browser.close()


def test_headline_counts_match_the_input(rendered) -> None:
    run, _out, b = rendered
    shown = b.eval(
        "Object.fromEntries([...document.querySelectorAll('.card')].map(c =>"
        " [c.dataset.verdict, Number(c.querySelector('.count').textContent.replace(/,/g, ''))]))"
    )
    assert shown == {**run.counts, "failed": run.failed}
    assert b.eval("document.querySelector('h1').textContent") == "#myNYPD"
    meta = b.eval("document.querySelector('.meta').textContent")
    assert "vit-b-32.abc123" in meta and "300 posts" in meta


def test_time_chart_has_one_bucket_per_hour(rendered) -> None:
    run, _out, b = rendered
    assert b.eval("document.querySelectorAll('svg.chart g.bucket').length") == run.hours
    posts = b.eval(
        "[...document.querySelectorAll('svg.chart g.bucket')].map(g => +g.dataset.posts)"
    )
    assert sum(posts) == sum(run.counts.values())
    # The same numbers as text, for readers who cannot use the chart.
    assert b.eval("document.querySelectorAll('#timeline table tbody tr').length") == run.hours


def test_thumbnails_load_from_data_uris_and_start_blurred(rendered, tmp_path: Path) -> None:
    _run, _out, b = rendered
    imgs = b.eval(
        "[...document.images].map(i => ({src: i.src.slice(0, 23), ok: i.complete &&"
        " i.naturalWidth > 0, alt: i.alt, sensitive: !!i.closest('.sensitive'),"
        " filter: getComputedStyle(i).filter}))"
    )
    assert len(imgs) >= 10
    assert all(i["src"] == "data:image/jpeg;base64," for i in imgs)
    assert all(i["ok"] for i in imgs), "a thumbnail did not decode"
    assert all(i["alt"].startswith("Photo posted with the caption") for i in imgs)
    sensitive = [i for i in imgs if i["sensitive"]]
    assert sensitive and all("blur" in i["filter"] for i in sensitive)
    assert all(i["filter"] == "none" for i in imgs if not i["sensitive"])
    # Missing images are placeholders, not broken images.
    assert b.eval("document.querySelectorAll('.thumb.missing').length") >= 1

    # A click on one thumbnail reveals that one only.
    b.click("#top-backlash label.thumb.sensitive")
    filters = b.eval(
        "[...document.querySelectorAll('.sensitive img')].map(i => getComputedStyle(i).filter)"
    )
    assert filters[0] == "none" and all("blur" in f for f in filters[1:])

    # "Show all images" reveals every one.
    b.click("label[for=reveal-all]")
    assert b.eval("document.getElementById('reveal-all').checked") is True
    filters = b.eval(
        "[...document.querySelectorAll('.sensitive img')].map(i => getComputedStyle(i).filter)"
    )
    assert all(f == "none" for f in filters)
    b.click("label[for=reveal-all]")  # back to blurred for the other tests
    b.click("#top-backlash label.thumb.sensitive")
    b.screenshot(tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_no_request_leaves_the_page(rendered) -> None:
    _run, out, b = rendered
    urls = b.requests()
    assert urls, "the network log is empty: Network.enable did not take"
    assert all(u.startswith(("data:", out.as_uri())) for u in urls), urls
    # No script at all, and a CSP that would block any that slipped in (e.g. from a caption).
    assert b.eval("document.scripts.length") == 0
    csp = b.eval("document.querySelector('meta[http-equiv=Content-Security-Policy]').content")
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "<script>alert(1)</script>" in b.eval("document.body.textContent")


def test_accessible_structure(rendered) -> None:
    _run, _out, b = rendered
    heads = b.eval("[...document.querySelectorAll('h1, h2')].map(h => h.tagName + ' ' + h.id)")
    assert heads[0] == "H1 " and len(heads) >= 8
    # Verdicts are told by text and a symbol, not only by colour.
    badge = b.eval("document.querySelector('#top-backlash .badge').textContent")
    assert "Backlash" in badge
    # The chart has a text alternative.
    assert b.eval("document.querySelector('svg.chart title').textContent")
    # Near-duplicate clusters found the re-cropped variants.
    assert b.eval("[...document.querySelectorAll('.cluster')].length") >= 3
    assert "variants" in b.eval("document.getElementById('duplicates').textContent")
