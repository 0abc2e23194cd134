"""The `backfire eval --out eval.html` page: one self-contained file drawn from the very dict
`backfire eval --json` prints, so every number on it is a JSON figure.

Like the campaign report: no script, a CSP that forbids every request but data: URIs, inline
SVG (a precision-recall curve and a reliability diagram per labelled scene), every chart's
numbers also written as text, and the worst mistakes' thumbnails blurred until clicked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from workers.domain import ResultRow
from workers.report.render import CSP, e
from workers.report.render import _thumb as thumb_html
from workers.report.style import CSS

EXTRA_CSS = """
.curves{display:grid;grid-template-columns:repeat(2,1fr);gap:14px}
figure.scene{margin:0;border:1px solid var(--line);border-radius:8px;padding:8px 10px}
figure.scene figcaption{font-weight:600;margin-bottom:4px}
figure.scene .pair{display:flex;gap:8px}
svg.mini{width:50%;height:auto}
.mini .frame{fill:none;stroke:#c9d0dc}
.mini .diag{stroke:#9aa3b2;stroke-dasharray:4 3}
.mini .curve{fill:none;stroke:var(--backlash);stroke-width:2}
.mini .bin{fill:#8896ab}
.mini .gap{fill:none;stroke:var(--backlash);stroke-width:1.5}
.mini text{font-size:10px;fill:var(--mute)}
td.num{text-align:right}
.mistake .what{font-weight:600}
"""


def num(x: Any, places: int = 4) -> str:
    return "–" if x is None else f"{float(x):.{places}f}"


def _scene_table(scenes: dict[str, Any]) -> str:
    cols = [
        ("positives", "Positives"), ("labelled", "Labelled"), ("roc_auc", "ROC-AUC"),
        ("average_precision", "AP"), ("threshold", "Threshold"), ("precision", "Precision"),
        ("recall", "Recall"), ("f1", "F1"), ("best_f1_threshold", "Best-F1 threshold"),
        ("best_f1", "Best F1"), ("ece", "ECE"),
    ]  # fmt: skip
    head = "".join(f'<th scope="col">{e(t)}</th>' for _, t in cols)
    rows = []
    for name, s in scenes.items():
        cells = []
        for key, _ in cols:
            v = s.get(key)
            text = str(v) if isinstance(v, int) else num(v)
            cells.append(f'<td class="num" data-metric="{key}">{text}</td>')
        ci = (s.get("ci95") or {}).get("f1")
        cells.append(f"<td>{num(ci[0], 2)}–{num(ci[1], 2)}</td>" if ci else "<td>–</td>")
        rows.append(
            f'<tr data-scene="{e(name)}"><th scope="row">{e(name.replace("_", " "))}</th>'
            f"{''.join(cells)}</tr>"
        )
    return (
        '<table class="data scenes-eval"><thead><tr><th scope="col">Scene</th>'
        f'{head}<th scope="col">F1 95 % CI</th></tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table>"
    )


def _pr_svg(name: str, points: list[list[float]]) -> str:
    w = h = 200
    m = 24
    side = w - 2 * m

    def xy(r: float, p: float) -> str:
        return f"{m + r * side:.1f},{m + (1 - p) * side:.1f}"

    d = " ".join(
        f"{'M' if i == 0 else 'L'}{xy(float(r or 0), float(p or 0))}"
        for i, (r, p, _t) in enumerate(points)
    )
    return (
        f'<svg class="mini pr-curve" data-scene="{e(name)}" data-points="{len(points)}" '
        f'viewBox="0 0 {w} {h}" role="img"><title>Precision-recall curve of {e(name)}, '
        f"{len(points)} points</title>"
        f'<rect class="frame" x="{m}" y="{m}" width="{side}" height="{side}"/>'
        + (f'<path class="curve" d="{d}"/>' if points else "")
        + f'<text x="{m}" y="{h - 6}">recall →</text><text x="2" y="{m - 8}">precision</text>'
        "</svg>"
    )


def _reliability_svg(name: str, bins: list[dict[str, Any]]) -> str:
    w = h = 200
    m = 24
    side = w - 2 * m
    parts = [
        f'<svg class="mini reliability" data-scene="{e(name)}" viewBox="0 0 {w} {h}" '
        f'role="img"><title>Reliability diagram of {e(name)}: fraction positive per '
        "probability bin against the diagonal</title>"
        f'<rect class="frame" x="{m}" y="{m}" width="{side}" height="{side}"/>'
        f'<line class="diag" x1="{m}" y1="{m + side}" x2="{m + side}" y2="{m}"/>'
    ]
    for b in bins:
        if not b["n"]:
            continue
        x = m + float(b["lo"]) * side
        bw = (float(b["hi"]) - float(b["lo"])) * side
        fh = float(b["frac_pos"]) * side
        py = m + (1 - float(b["mean_p"])) * side
        parts.append(
            f'<g class="rbin" data-n="{b["n"]}"><title>p {num(b["lo"], 1)}–{num(b["hi"], 1)}: '
            f'{b["n"]} posts, mean p {num(b["mean_p"], 3)}, {num(b["frac_pos"], 3)} positive'
            f'</title><rect class="bin" x="{x + 1:.1f}" y="{m + side - fh:.1f}" '
            f'width="{max(bw - 2, 1):.1f}" height="{fh:.1f}"/>'
            f'<line class="gap" x1="{x + 1:.1f}" x2="{x + bw - 1:.1f}" y1="{py:.1f}" '
            f'y2="{py:.1f}"/></g>'
        )
    parts.append(
        f'<text x="{m}" y="{h - 6}">predicted p →</text><text x="2" y="{m - 8}">positive</text>'
        "</svg>"
    )
    return "".join(parts)


def _curves(scenes: dict[str, Any]) -> str:
    figs = []
    for name, s in scenes.items():
        figs.append(
            f'<figure class="scene" data-scene="{e(name)}"><figcaption>{e(name)} '
            f'<small>({s["positives"]} of {s["labelled"]} positive, AP '
            f'{num(s.get("average_precision"))}, ECE {num(s.get("ece"))})</small></figcaption>'
            f'<div class="pair">{_pr_svg(name, s.get("pr_curve") or [])}'
            f'{_reliability_svg(name, s.get("reliability") or [])}</div></figure>'
        )
    return f'<div class="curves">{"".join(figs)}</div>'


def _verdicts(v: dict[str, Any] | None) -> str:
    head = '<section id="verdicts" aria-labelledby="h-verdicts"><h2 id="h-verdicts">Verdicts</h2>'
    if not v:
        return f"{head}<p>No post is labelled with a verdict.</p></section>"
    labels = v["labels"]
    th = "".join(f'<th scope="col">{e(c)}</th>' for c in labels)
    rows = "".join(
        f'<tr data-label="{e(c)}"><th scope="row">{e(c)}</th>'
        + "".join(f'<td class="num">{n}</td>' for n in row)
        + f'<td class="num" data-metric="f1">{num(v["per_class"][c]["f1"])}</td></tr>'
        for c, row in zip(labels, v["confusion"], strict=True)
    )
    return (
        f'{head}<p>Macro F1 <strong data-metric="macro_f1">{num(v["macro_f1"])}</strong>, '
        f'accuracy <span data-metric="accuracy">{num(v["accuracy"])}</span> on '
        f'{v["labelled"]} labelled posts. Rows: the label; columns: the verdict given.</p>'
        f'<table class="data confusion"><thead><tr><th scope="col">label ↓ / verdict →</th>{th}'
        f'<th scope="col">F1</th></tr></thead><tbody>{rows}</tbody></table></section>'
    )


def _captions(c: dict[str, Any] | None) -> str:
    head = (
        '<section id="captions" aria-labelledby="h-captions">'
        '<h2 id="h-captions">Caption irony</h2>'
    )
    if not c:
        return f"{head}<p>No caption is labelled ironic or not.</p></section>"
    i = c["ironic"]
    return (
        f"{head}<p>Model <code>{e(c['model'])}</code> on {i['labelled']} labelled captions "
        f"({i['positives']} ironic): F1 <span data-metric=\"f1\">{num(i['f1'])}</span> at 0.5, "
        f"ROC-AUC <span data-metric=\"roc_auc\">{num(i['roc_auc'])}</span>, ECE "
        f"<span data-metric=\"ece\">{num(i['ece'])}</span>.</p></section>"
    )


def _comparison(c: dict[str, Any] | None) -> str:
    """`--compare-precision`: the same posts through the other image tower."""
    if not c:
        return ""
    a, b = e(c["base"]["precision"]), e(c["other"]["precision"])
    cos = c.get("embedding_cosine") or {}
    m = c.get("verdict_macro_f1")
    macro = (
        f' Verdict macro F1: {a} <span data-metric="macro_f1_base">{num(m["base"])}</span>, '
        f'{b} <span data-metric="macro_f1_other">{num(m["other"])}</span>.' if m else ""
    )
    rows = "".join(
        f'<tr data-scene="{e(name)}"><th scope="row">{e(name.replace("_", " "))}</th>'
        + "".join(
            f'<td class="num" data-metric="{k}">{num(s.get(k))}</td>'
            for k in ("roc_auc", "roc_auc_other", "auc_difference", "decision_agreement")
        )
        + "</tr>"
        for name, s in c["scenes"].items()
    )
    return (
        '<section id="precision" aria-labelledby="h-precision">'
        f'<h2 id="h-precision">Image precision: {a} vs {b}</h2>'
        f"<p>The same {c['posts']} posts through the {b} image tower "
        f"(<code>{e(c['other']['model_id'])}</code>): the verdicts agree on "
        f'<strong data-metric="verdict_agreement">{num(c["verdict_agreement"])}</strong> of '
        f"them ({c['verdicts_differing']} differ); embedding cosine min "
        f"{num(cos.get('min'))}, mean {num(cos.get('mean'))}.{macro}</p>"
        '<table class="data"><thead><tr><th scope="col">scene</th>'
        f'<th scope="col">ROC-AUC {a}</th><th scope="col">ROC-AUC {b}</th>'
        f'<th scope="col">AUC difference ({b} − {a})</th>'
        '<th scope="col">Same decision</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _mistakes(ms: list[dict[str, Any]], thumbs: dict[str, str | None]) -> str:
    head = (
        '<section id="mistakes" aria-labelledby="h-mistakes">'
        '<h2 id="h-mistakes">Worst mistakes</h2>'
    )
    if not ms:
        return f"{head}<p>No mistake on the labelled posts.</p></section>"
    items = []
    sensitive = {m["post_id"] for m in ms}  # chosen for being wrong: blurred until clicked
    for m in ms:
        row = ResultRow(m["post_id"], "ok", caption_text=m.get("caption") or "")
        if m["kind"] == "scene":
            what = (
                f"{m['scene']}: labelled {'present' if m['label'] else 'absent'}, "
                f"p {num(m['p'], 2)} (threshold {num(m['threshold'], 2)})"
            )
        else:
            what = (
                f"verdict {m['predicted']} ({num(m.get('confidence'), 2)}), labelled "
                f"{m['label']}"
            )
        items.append(
            f'<li class="post mistake" data-post-id="{e(m["post_id"])}" data-kind="{m["kind"]}">'
            f"{thumb_html(row, thumbs, sensitive)}"
            f'<div class="body"><p class="what">{e(what)}</p>'
            f'<blockquote class="caption">{e(m.get("caption") or "") or "<em>no caption</em>"}'
            f'</blockquote><p class="by"><code>{e(m["post_id"])}</code> · {e(m["location"])}</p>'
            "</div></li>"
        )
    return (
        f"{head}<p>The labelled posts the pipeline got most wrong, most confident first.</p>"
        f'<ol class="posts">{"".join(items)}</ol></section>'
    )


def render_eval_page(result: dict[str, Any], thumbs: dict[str, str | None]) -> str:
    posts = result["posts"]
    generated = datetime.now(UTC).strftime("%-d %b %Y %H:%M UTC")
    scenes = result["scenes"]
    failed = "".join(
        f"<li><code>{e(f['post_id'])}</code> {e(f['location'])}: "
        f"{e(f['error'].get('message', ''))}</li>"
        for f in result.get("failed", [])
    )
    return "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        "<title>Backfire evaluation</title>",
        f"<style>{CSS}{EXTRA_CSS}</style></head><body>",
        '<input type="checkbox" id="reveal-all" class="visually-hidden">',
        '<header class="top"><div class="wrap"><p class="kicker">Backfire evaluation</p>'
        f"<h1>How right is it on {e(result['source'])}?</h1>"
        f'<p class="meta">{posts["scored"]:,} of {posts["labelled"]:,} labelled posts scored '
        f'({posts["failed"]:,} failed; {posts["unlabelled"]:,} unlabelled and '
        f'{posts["skipped"]:,} unreadable rows left out) · model <code>{e(result["model_id"])}'
        f'</code> · pipeline <code>{e(result["pipeline_version"])}</code> · generated '
        f"{e(generated)}</p>"
        '<label for="reveal-all" class="reveal-all"><span class="box" aria-hidden="true">'
        '</span> Show all images <span class="hint">(some show violence; each is blurred '
        "until you click it)</span></label></div></header>",
        '<main id="main">',
        '<section id="scenes" aria-labelledby="h-scenes"><h2 id="h-scenes">Scenes</h2>'
        "<p>Per scene: how well the probability ranks photos (ROC-AUC, average precision), "
        "how right the threshold is (precision, recall, F1), the threshold with the best F1, "
        "and how far the probabilities are from the observed frequencies (expected "
        "calibration error: 0 is perfect).</p>"
        f"{_scene_table(scenes) if scenes else '<p>No post is labelled with scenes.</p>'}"
        f"{_curves(scenes)}</section>",
        _verdicts(result.get("verdicts")),
        _captions(result.get("captions")),
        _comparison(result.get("precision_comparison")),
        _mistakes(result.get("mistakes") or [], thumbs),
        (
            '<section id="failed"><h2>Posts that could not be scored</h2>'
            f"<ul>{failed}</ul></section>" if failed else ""
        ),
        "</main>",
        '<footer class="wrap"><p>Figures are on the labelled sample only; bootstrap 95 % '
        "intervals show how much they could move on another sample of the same size. "
        f"Generated {e(generated)} by backfire eval.</p></footer>",
        "</body></html>",
    ])  # fmt: skip
