"""`backfire report --hashtag`: rows come from the verdict store, thumbnails from its blobs."""

from __future__ import annotations

import io

from PIL import Image
from typer.testing import CliRunner

from tests.support.report_gen import make_image
from workers.cli.app import app
from workers.config import Settings, get_settings
from workers.report.store_rows import store_rows
from workers.store import open_database
from workers.store.blobs import BlobStore
from workers.store.posts import NewPost, create_post, record_result


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    return buf.getvalue()


def test_report_from_the_store(settings: Settings, tmp_path, monkeypatch) -> None:
    db = open_database(settings)
    blobs = BlobStore(settings.resolved_media_dir)
    verdicts = ["backlash", "backlash", "supportive", None]
    for i, v in enumerate(verdicts):
        sha = blobs.put(_jpeg(make_image(i)))
        row, _ = create_post(
            db, NewPost(owner="k1", media_sha256=sha, post_id=f"s{i}", hashtag="myNYPD",
                        caption=f"caption {i}", created_at=f"2014-04-22T1{i}:00:00Z"),
        )  # fmt: skip
        rec = (
            {"verdict": v, "confidence": 0.9, "reasons": ["r"], "scenes": {"arrest": 0.9}}
            if v
            else {"error": {"type": "image-corrupt", "message": "bad"}}
        )
        record_result(db, row.seq, "pv1", rec, detected=[], scoring_s=0.1)
    rows = list(store_rows(db, settings, "myNYPD"))
    db.dispose()
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "error"]
    assert [r.get("verdict") for r in rows[:3]] == verdicts[:3]

    monkeypatch.setenv("BACKFIRE_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    out = tmp_path / "r.html"
    try:
        res = CliRunner().invoke(app, ["report", "--hashtag", "myNYPD", "--out", str(out)])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert 'data-verdict="backlash"><dt>' in html and "image-corrupt" in html
    assert html.count('src="data:image/jpeg') == 3
