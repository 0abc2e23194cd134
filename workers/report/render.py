"""ReportModel → one self-contained HTML page: inline CSS, inline SVG, data-URI thumbnails.

No script at all: the blur-until-clicked thumbnails and "show all images" are checkboxes and CSS,
so the Content-Security-Policy can forbid every script and every request that is not a data: URI.
Everything a chart says is also written as text (headline numbers, a data table under the chart),
so the page reads without colour and with a screen reader.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from workers.domain import ResultRow, parse_time
from workers.report.data import Bucket, DupCluster, ReportModel, TopPost
from workers.report.style import CSS

MIN_LINE_POSTS = 3
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
VERDICT_LABELS = {
    "backlash": ("Backlash", "▲"),
    "supportive": ("Supportive", "●"),
    "neutral": ("Neutral", "■"),
    "off_topic": ("Off-topic", "◆"),
}


def e(x: Any) -> str:
    return escape(str(x), quote=True)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def fmt_time(dt: datetime | None, unit: str = "minute") -> str:
    if dt is None:
        return "–"
    if unit == "day":
        return dt.strftime("%-d %b %Y")
    return dt.strftime("%-d %b %Y %H:%M UTC")


def render(
    m: ReportModel, thumbs: dict[str, str | None], sensitive: set[str], generated_at: str
) -> str:
    """`thumbs` maps a post id to its data URI (None: image unavailable); `sensitive` holds the
    post ids whose thumbnails start blurred."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{e(m.title)} — Backfire campaign report</title>",
        f"<style>{CSS}</style></head><body>",
        # First in <body> so that `#reveal-all:checked ~ main` reaches every thumbnail.
        '<input type="checkbox" id="reveal-all" class="visually-hidden">',
        _header(m, generated_at),
        '<main id="main">',
        _headline(m),
        _posts_section(
            "to-review", f"Posts to review ({m.review_total:,})", m.to_review, thumbs,
            sensitive, "Verdicts with weak or conflicting evidence (a scene near its "
            "threshold, a force scene under a sincere-looking caption, low confidence), most "
            "seen first: check these by hand, and label them for `backfire calibrate`.",
        ),
        _timeline(m),
        _scenes(m),
        _posts_section(
            "top-backlash", "Posts driving the backlash", m.top_backlash, thumbs, sensitive,
            "Backlash posts ranked by confidence × reach (posts of the same photo plus reposts).",
        ),
        _posts_section(
            "top-supportive", "Posts supporting the campaign", m.top_supportive, thumbs,
            sensitive, "Supportive posts ranked the same way.",
        ),
        _clusters(m.clusters, thumbs, sensitive),
        _failures(m),
        "</main>",
        _footer(m, generated_at),
        "</body></html>",
    ]  # fmt: skip
    return "\n".join(parts)


# --- sections ---------------------------------------------------------------------------------
def _header(m: ReportModel, generated_at: str) -> str:
    span = (
        f"posts from {fmt_time(m.first_post)} to {fmt_time(m.last_post)}"
        if m.first_post
        else "no post dates"
    )
    versions = ", ".join(f"<code>{e(v)}</code>" for v, _ in m.pipeline_versions[:3]) or "–"
    mixed = (
        f' <strong class="warn">Mixed pipeline versions ({len(m.pipeline_versions)}): '
        "verdicts from different models are not comparable.</strong>"
        if len(m.pipeline_versions) > 1
        else ""
    )
    return (
        '<header class="top"><div class="wrap">'
        '<p class="kicker">Backfire campaign report</p>'
        f"<h1>{e(m.title)}</h1>"
        f'<p class="meta">{m.total:,} posts · {span} · pipeline {versions}'
        f" · scored {e(m.scored_at or 'at an unknown time')} · report generated {e(generated_at)}"
        f"{mixed}</p>"
        '<label for="reveal-all" class="reveal-all">'
        '<span class="box" aria-hidden="true"></span> Show all images '
        '<span class="hint">(some show violence; each is blurred until you click it)</span>'
        "</label></div></header>"
    )


def _verdict_badge(v: str) -> str:
    label, mark = VERDICT_LABELS.get(v, (v, "?"))
    return f'<span class="badge v-{e(v)}"><span aria-hidden="true">{mark}</span> {e(label)}</span>'


def _headline(m: ReportModel) -> str:
    b = m.share("backlash")
    peak = max((x for x in m.buckets if x.posts >= 5), key=lambda x: x.share or 0, default=None)
    if m.ok == 0:
        lede = "No post could be scored, so there is no verdict to report."
    else:
        verdict = (
            "The campaign is backfiring"
            if b >= 0.3
            else "Watch closely"
            if b >= 0.15
            else "No sign of backfire"
        )
        lede = (
            f"<strong>{verdict}:</strong> {pct(b)} of the {m.ok:,} scored posts are backlash "
            f"({m.counts.get('backlash', 0):,} posts), {pct(m.share('supportive'))} supportive."
        )
        if peak is not None and peak.share:
            lede += (
                f" Peak backlash share: {pct(peak.share)} in the {m.bucket_unit} of "
                f"{fmt_time(peak.start, m.bucket_unit)} ({peak.posts:,} posts)."
            )
    cards = []
    for v, (label, mark) in VERDICT_LABELS.items():
        n = m.counts.get(v, 0)
        cards.append(
            f'<div class="card v-{v}" data-verdict="{v}"><dt><span aria-hidden="true">{mark}'
            f'</span> {label}</dt><dd><span class="count">{n:,}</span> '
            f'<span class="share">{pct(m.share(v))}</span></dd></div>'
        )
    cards.append(
        f'<div class="card v-failed" data-verdict="failed"><dt>Not scored</dt><dd>'
        f'<span class="count">{m.failed:,}</span> <span class="share">of {m.total:,}</span>'
        "</dd></div>"
    )
    bar = "".join(
        f'<span class="seg v-{v}" style="width:{100 * m.share(v):.2f}%"></span>'
        for v in VERDICT_LABELS
        if m.counts.get(v)
    )
    return (
        '<section id="headline" aria-labelledby="h-headline">'
        '<h2 id="h-headline">Verdicts</h2>'
        f'<p class="lede">{lede}</p>'
        f'<dl class="cards">{"".join(cards)}</dl>'
        f'<div class="stack" aria-hidden="true">{bar}</div>'
        "</section>"
    )


def _timeline(m: ReportModel) -> str:
    head = '<section id="timeline" aria-labelledby="h-timeline">'
    unit = "hourly" if m.bucket_unit == "hour" else "daily"
    title = f'<h2 id="h-timeline">Backlash share over time <small>({unit})</small></h2>'
    if not m.buckets:
        return f"{head}{title}<p>No post has a date, so there is no timeline.</p></section>"
    undated = f" {m.undated:,} posts without a date are not shown." if m.undated else ""
    rows = "".join(
        f'<tr><th scope="row">{fmt_time(b.start, m.bucket_unit)}</th><td>{b.posts:,}</td>'
        f"<td>{b.backlash:,}</td><td>{pct(b.share)}</td></tr>"
        for b in m.buckets
    )
    return (
        f"{head}{title}"
        '<p class="legend"><span class="key line" aria-hidden="true"></span> backlash share '
        "(left axis, line) · "
        '<span class="key bar" aria-hidden="true"></span> posts per '
        f"{m.bucket_unit} (right axis, bars); grey dots: fewer than {MIN_LINE_POSTS} posts."
        f"{undated}</p>"
        f"{_time_svg(m.buckets, m.bucket_unit, m.markers)}"
        f"{_marker_text(m)}"
        "<details><summary>The numbers behind the chart</summary>"
        '<table class="data"><thead><tr><th scope="col">'
        f'{m.bucket_unit.capitalize()} starting</th><th scope="col">Posts</th>'
        '<th scope="col">Backlash</th><th scope="col">Share</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></details></section>"
    )


def _marker_text(m: ReportModel) -> str:
    if not m.markers:
        return ""
    items = "".join(
        f"<li>{e(label)}: {fmt_time(t)}</li>" for t, label in sorted(m.markers, key=lambda x: x[0])
    )
    return f'<ul class="markers">{items}</ul>'


def _time_svg(
    buckets: list[Bucket], unit: str, markers: list[tuple[datetime, str]] | None = None
) -> str:
    w, h = 960, 280
    left, right, top, bottom = 48, 56, 12, 36
    pw, ph = w - left - right, h - top - bottom
    n = len(buckets)
    step = pw / n
    vmax = max(b.posts for b in buckets) or 1
    out = [
        f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" '
        f'aria-labelledby="chart-title"><title id="chart-title">Backlash share and post volume '
        f"per {unit}, {n} buckets; the numbers are in the table below</title>"
    ]
    for frac in (0, 0.25, 0.5, 0.75, 1):
        y = top + ph * (1 - frac)
        vol = round(vmax * frac)
        out.append(
            f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{frac * 100:.0f}%</text>"
            f'<text class="axis" x="{left + pw + 6}" y="{y + 4:.1f}">{vol:,}</text>'
        )
    out.append('<g class="buckets">')
    bar_w = max(step * 0.72, 0.6)
    for i, b in enumerate(buckets):
        x = left + i * step + (step - bar_w) / 2
        bh = ph * b.posts / vmax
        out.append(
            f'<g class="bucket" data-posts="{b.posts}" data-backlash="{b.backlash}">'
            f"<title>{fmt_time(b.start, unit)}: {b.posts:,} posts, {b.backlash:,} backlash "
            f"({pct(b.share)})</title>"
            f'<rect class="vol" x="{x:.1f}" y="{top + ph - bh:.1f}" width="{bar_w:.1f}" '
            f'height="{bh:.1f}"/></g>'
        )
    out.append("</g>")
    # A bucket of one or two posts has a share of 0 % or 100 % by chance: such buckets get a grey
    # dot off the line, so a quiet last hour does not read as a spike.
    pts = [
        (left + (i + 0.5) * step, top + ph * (1 - (b.share or 0)), b.posts >= MIN_LINE_POSTS)
        for i, b in enumerate(buckets)
        if b.posts
    ]
    line = [(x, y) for x, y, solid in pts if solid]
    if line:
        d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(line))
        out.append(f'<path class="share" d="{d}"/>')
    if n <= 120:
        out.extend(
            f'<circle class="{"pt" if solid else "pt few"}" cx="{x:.1f}" cy="{y:.1f}" r="3"/>'
            for x, y, solid in pts
        )
    every = max(1, round(n / 8))
    for i in range(0, n, every):
        x = left + (i + 0.5) * step
        lab = buckets[i].start.strftime("%-d %b %H:%M" if unit == "hour" else "%-d %b")
        out.append(
            f'<text class="axis" x="{x:.1f}" y="{h - bottom + 18}" text-anchor="middle">'
            f"{lab}</text>"
        )
    span = (buckets[-1].end - buckets[0].start).total_seconds() or 1.0
    for t, label in markers or []:
        frac = (t - buckets[0].start).total_seconds() / span
        if 0 <= frac <= 1:
            x = left + frac * pw
            out.append(
                f'<g class="marker"><title>{e(label)} at {fmt_time(t)}</title>'
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#111" '
                f'stroke-width="2" stroke-dasharray="6 4"/>'
                f'<text class="axis" x="{x + 4:.1f}" y="{top + 12}">{e(label)}</text></g>'
            )
    out.append("</svg>")
    return "".join(out)


def _scenes(m: ReportModel) -> str:
    n = m.counts.get("backlash", 0)
    head = (
        '<section id="scenes" aria-labelledby="h-scenes">'
        '<h2 id="h-scenes">What the backlash photos show</h2>'
    )
    if not n:
        return f"{head}<p>No backlash posts.</p></section>"
    rows = []
    for name, group, k in m.scene_counts:
        share = k / n
        rows.append(
            f'<tr data-scene="{e(name)}"><th scope="row">{e(name.replace("_", " "))}</th>'
            f'<td class="grp">{e(group)}</td><td class="num">{k:,}</td>'
            f'<td class="barcell"><span class="hbar g-{e(group)}" '
            f'style="width:{100 * share:.1f}%"></span><span class="num">{pct(share)}</span>'
            "</td></tr>"
        )
    return (
        f"{head}<p>Share of the {n:,} backlash posts in which the scene detector saw each scene "
        "(a photo can show several).</p>"
        '<table class="scenes"><thead><tr><th scope="col">Scene</th><th scope="col">Group</th>'
        '<th scope="col">Posts</th><th scope="col">Share of backlash posts</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _thumb(row: ResultRow, thumbs: dict[str, str | None], sensitive: set[str]) -> str:
    pid = row.post_id
    uri = thumbs.get(pid)
    caption = row.caption_text.strip()
    alt = f"Photo posted with the caption: {caption}" if caption else "Photo posted without caption"
    if not uri:
        return (
            '<div class="thumb missing" role="img" aria-label="Image not available">'
            "<span>image not available</span></div>"
        )
    if pid not in sensitive:
        return f'<div class="thumb"><img src="{uri}" alt="{e(alt[:300])}"></div>'
    return (
        '<label class="thumb sensitive">'
        '<input type="checkbox" class="reveal visually-hidden">'
        f'<img src="{uri}" alt="{e(alt[:300])}">'
        '<span class="veil" aria-hidden="true">Sensitive image<br>click to show</span>'
        '<span class="visually-hidden">Show this image (may show violence)</span></label>'
    )


def _post_card(t: TopPost, rank: int, thumbs: dict[str, str | None], sensitive: set[str]) -> str:
    r = t.row
    reasons = "".join(f"<li>{e(x)}</li>" for x in r.reasons[:5])
    who = e(r.author or "unknown author")
    when = fmt_time(parse_time(r.created_at))
    same = f"; this photo was posted {t.same_image_posts:,} times" if t.same_image_posts > 1 else ""
    caption = r.caption_text
    return (
        f'<li class="post" data-post-id="{e(r.post_id)}">'
        f"{_thumb(r, thumbs, sensitive)}"
        '<div class="body">'
        f'<p class="head"><span class="rank">#{rank}</span> {_verdict_badge(str(r.verdict))}'
        f" confidence {r.confidence or 0.0:.2f} · reach {t.reach:,}</p>"
        f'<blockquote class="caption">{e(caption) or "<em>no caption</em>"}</blockquote>'
        f'<p class="by">{who} · {when} · <code>{e(r.post_id)}</code>{same}</p>'
        f'<ul class="reasons" aria-label="Reasons">{reasons}</ul>'
        + (f'<p class="review">Review: {e(r.review_reason)}</p>' if r.review else "")
        + "</div></li>"
    )


def _posts_section(
    sid: str,
    title: str,
    posts: list[TopPost],
    thumbs: dict[str, str | None],
    sensitive: set[str],
    intro: str,
) -> str:
    head = f'<section id="{sid}" aria-labelledby="h-{sid}"><h2 id="h-{sid}">{e(title)}</h2>'
    if not posts:
        return f"{head}<p>None.</p></section>"
    cards = "".join(_post_card(t, i, thumbs, sensitive) for i, t in enumerate(posts, 1))
    return f'{head}<p>{e(intro)}</p><ol class="posts">{cards}</ol></section>'


def _clusters(cs: list[DupCluster], thumbs: dict[str, str | None], sensitive: set[str]) -> str:
    head = (
        '<section id="duplicates" aria-labelledby="h-duplicates">'
        '<h2 id="h-duplicates">Photos posted again and again</h2>'
    )
    if not cs:
        return f"{head}<p>No photo was posted more than once.</p></section>"
    items = []
    for c in cs:
        mix = ", ".join(
            f"{n:,} {VERDICT_LABELS.get(v, (v,))[0].lower()}" for v, n in c.verdicts.items()
        )
        files = "the same file" if c.files == 1 else f"{c.files} variants (re-encoded or cropped)"
        items.append(
            f'<li class="cluster" data-posts="{c.posts}">{_thumb(c.rep, thumbs, sensitive)}'
            f'<div class="body"><p class="head"><strong class="count">{c.posts:,} posts'
            f"</strong> · {files}</p><p>{e(mix)}</p>"
            f'<blockquote class="caption">{e(c.rep.caption_text)}</blockquote>'
            "</div></li>"
        )
    return (
        f"{head}<p>The same photo re-posted or re-cropped (perceptual hash), most posted first."
        f'</p><ul class="clusters">{"".join(items)}</ul></section>'
    )


def _failures(m: ReportModel) -> str:
    head = (
        '<section id="failures" aria-labelledby="h-failures">'
        '<h2 id="h-failures">Posts that could not be scored</h2>'
    )
    if not m.failures:
        return f"{head}<p>Every post was scored.</p></section>"
    rows = "".join(
        f'<tr><th scope="row"><code>{e(f.code)}</code></th><td class="num">{f.count:,}</td>'
        f"<td>{e(f.example_message)}</td><td>{e(', '.join(f.example_ids))}</td></tr>"
        for f in m.failures
    )
    return (
        f"{head}<p>{m.failed:,} of {m.total:,} posts failed; they are left out of every share "
        "above.</p>"
        '<table class="data"><thead><tr><th scope="col">Reason</th><th scope="col">Posts</th>'
        '<th scope="col">Example message</th><th scope="col">Example posts</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _footer(m: ReportModel, generated_at: str) -> str:
    return (
        '<footer class="wrap"><p>Verdicts come from a CLIP scene detector and a caption irony '
        "model (see the model cards); they are evidence to check, not a judgement. "
        "Shares are of scored posts. "
        f"Report generated {e(generated_at)} by backfire.</p></footer>"
    )
