"""Stance heads compared on the held-out parts of ../shared/data/police-stance (issue 16).

    .venv/bin/python bench/stance_alternatives.py [--layers 6,8,10,12] [--show-disagreements 40]

Fitted on the `fit` part (hashtag rows of the two big events + half of the human rows), scored
on `human` (the other half of the human-labelled rows) and `events` (hashtag rows of the other
events), and by 5-fold cross-validation over all human rows (the fit part's hashtag rows always
in, the other folds' human rows in). Alternatives:
- irony-only: v3's irony probability read as p(critical);
- prototype head (the shipped design) on v3's pooled states after L layers, one pass;
- stance-only: logistic regression on v3's pooled embedding (768 weights a class);
- small linear: TF-IDF (word 1-2 + char 2-5) + logistic regression, event names masked;
- both: the prototype cosines beside the embedding regression's.
Embeddings are cached under the settings' cache_dir (they are of the shared data: never in the
repo). Prints figures only; `--show-disagreements N` prints the N hashtag rows the prototype
head most confidently disagrees with, to judge the hashtag labels' noise by reading them.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "police-stance"
EVENT_WORDS = re.compile(
    r"#\w+|ferguson|brooklyn center|daunte|wright|adam toledo|toledo|chicago|cpd|minneapolis|"
    r"george floyd|floyd|darren wilson|mike brown|michael brown|dc|washington",
    re.IGNORECASE,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="4,6,8,9,10,11,12")
    ap.add_argument("--show-disagreements", type=int, default=0)
    ap.add_argument("--c", type=float, default=1.0)
    ap.add_argument("--hashtag-weights", default="1,0.02",
                    help="weights of a hashtag-labelled row in each fit (a human row weighs 1)")
    ap.add_argument("--precision", default="int8", help="int8 (the default inference) is ~4x "
                    "faster to embed the 2,500 rows than float32")
    args = ap.parse_args()

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    from workers.caption import SHIPPED_MODEL_FILE, load_model_file
    from workers.caption.stance import StanceHead
    from workers.caption.training.stance import fit_calibration, load_anchors
    from workers.caption.training.stance_data import load_stance, parts, stance_figures
    from workers.config import get_settings

    rows = load_stance(DATA)
    masks = parts(rows)
    y = rows.y()
    human_all = np.array([s == "human" for s in rows.label_sources])
    model = load_model_file(SHIPPED_MODEL_FILE, precision=args.precision)
    _, anchors = load_anchors()
    anchor_texts = [t for v in anchors.values() for t in v]
    depths = tuple(range(1, 13))
    cache = get_settings().cache_dir / "stance-bench" / f"{model.model_id}.npz"
    if cache.is_file():
        z = np.load(cache)
        states, anchor_states, irony = z["states"], z["anchor_states"], z["irony"]
    else:
        import torch

        from workers.caption.adapter import encoder_text

        t0 = time.monotonic()

        def all_depths(texts: list[str]) -> np.ndarray:
            out = np.zeros((len(depths), len(texts), 768), np.float32)
            with torch.inference_mode():
                for i, t in enumerate(texts):
                    if i % 250 == 0:
                        print(f"  {i}/{len(texts)} ({time.monotonic() - t0:.0f} s)", flush=True)
                    x = torch.tensor([model.tokenizer.encode(encoder_text(t)).ids])
                    for d, v in zip(depths, model.encoder.pooled_at(x, torch.ones_like(x), depths),
                                    strict=True):
                        out[d - 1, i] = v[0].numpy()
            return out

        states = all_depths(rows.texts)
        anchor_states = all_depths(anchor_texts)
        # The irony head reads the last layer's pooled state: no second pass.
        import math

        logits = states[-1] @ model.head.weight.numpy()[0] + float(model.head.bias[0])
        irony = np.array([1 / (1 + math.exp(-(model.platt_a * z + model.platt_c)))
                          for z in logits])
        print(f"embedded {len(rows)} + {len(anchor_texts)} captions in "
              f"{time.monotonic() - t0:.0f} s")
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, states=states, anchor_states=anchor_states, irony=irony)

    folds = np.full(len(rows), -1)
    hidx = np.flatnonzero(human_all)
    rng = np.random.default_rng(0)
    folds[hidx] = rng.permutation(len(hidx)) % 5
    hashtag_fit = masks["fit"] & ~human_all

    def report(name: str, probs_fn) -> None:
        """probs_fn(train_mask, test_mask) -> (n_test, 3) probabilities."""
        cells = []
        for part in ("human", "events"):
            p = probs_fn(masks["fit"], masks[part])
            f = stance_figures(y[masks[part]], p)
            cells.append(f"{f.auc:.3f} / {f.macro_f1:.3f}")
        cv_p = np.zeros((len(rows), 3))
        for k in range(5):
            test = folds == k
            train = hashtag_fit | (human_all & (folds != k) & (folds >= 0))
            cv_p[test] = probs_fn(train, test)
        f = stance_figures(y[human_all], cv_p[human_all])
        cells.append(f"{f.auc:.3f} / {f.macro_f1:.3f}")
        print(f"{name:<34} " + "   ".join(f"{c:>15}" for c in cells))

    print(f"{'head':<34} {'human half':>15}   {'other events':>15}   {'human 5-fold CV':>15}")
    print(f"{'':<34} {'AUC / macro-F1':>15}   {'AUC / macro-F1':>15}   {'AUC / macro-F1':>15}")

    def irony_only(_train, test):
        p = irony[test]
        return np.stack([p, 1 - p, np.zeros_like(p)], axis=1)

    report("irony-only (v3 p(ironic))", irony_only)

    counts = [len(v) for v in anchors.values()]
    bounds = np.cumsum([0, *counts])

    def proto_head(layer: int) -> StanceHead:
        protos = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            e = anchor_states[layer - 1, a:b]
            e = e / np.linalg.norm(e, axis=1, keepdims=True)
            m = e.mean(axis=0)
            protos.append(m / np.linalg.norm(m))
        k = len(protos)
        return StanceHead(np.stack(protos), np.zeros((3, k)), np.zeros(3), layer, tuple(anchors))

    def weights(train, hw):
        return np.where(human_all[train], 1.0, hw)

    for hw in [float(x) for x in args.hashtag_weights.split(",")]:
        print(f"-- hashtag rows weighted {hw:g} (human rows 1)")
        for layer in [int(x) for x in args.layers.split(",")]:
            head = proto_head(layer)
            feats = head.features(states[layer - 1])

            def proto(train, test, feats=feats, head=head, hw=hw):
                head.weight, head.bias = fit_calibration(feats[train], y[train], head.scale,
                                                         args.c, weights(train, hw))
                z = head.scale * feats[test] @ head.weight.T + head.bias
                e = np.exp(z - z.max(axis=1, keepdims=True))
                return e / e.sum(axis=1, keepdims=True)

            report(f"prototype head, layer {layer}", proto)

        for layer in (12, 11):
            X = states[layer - 1]

            def emb_lr(train, test, X=X, hw=hw):
                fit = LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000)
                fit.fit(X[train], y[train], sample_weight=weights(train, hw))
                return _full(fit, fit.predict_proba(X[test]))

            report(f"stance-only LR on embedding, L{layer}", emb_lr)

            head = proto_head(layer)
            feats = head.features(X)

            def both(train, test, X=X, feats=feats, hw=hw):
                Z = np.hstack([X, 10 * feats])
                fit = LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000)
                fit.fit(Z[train], y[train], sample_weight=weights(train, hw))
                return _full(fit, fit.predict_proba(Z[test]))

            report(f"prototypes + embedding LR, L{layer}", both)

    masked = [EVENT_WORDS.sub(" ", t) for t in rows.texts]

    def tfidf(train, test):  # hashtag rows at full weight: its only training signal
        vec = make_union(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True),
        )
        pipe = make_pipeline(vec, LogisticRegression(C=1.0, class_weight="balanced",
                                                     max_iter=3000))
        tr = np.flatnonzero(train)
        pipe.fit([masked[i] for i in tr], y[tr])
        return _full(pipe[-1], pipe.predict_proba([masked[i] for i in np.flatnonzero(test)]))

    report("small linear (TF-IDF + LR, masked)", tfidf)

    if args.show_disagreements:
        head = proto_head(11)
        feats = head.features(states[10])
        fit = masks["fit"]
        head.weight, head.bias = fit_calibration(feats[fit], y[fit], head.scale, args.c,
                                                 weights(fit, 0.02))
        p = head.probabilities(states[10])
        hashtag = np.array([s == "hashtag" for s in rows.label_sources])
        other = np.where(y == 0, p[:, 1], p[:, 0])  # p of the opposite stance
        idx = [i for i in np.argsort(-other) if hashtag[i]][: args.show_disagreements]
        for i in idx:
            print(f"{rows.labels[i]:<10} p_opp {other[i]:.2f}  {rows.texts[i][:160]}")


def _full(fit, p: np.ndarray) -> np.ndarray:
    out = np.zeros((len(p), 3))
    out[:, fit.classes_] = p
    return out


if __name__ == "__main__":
    main()
