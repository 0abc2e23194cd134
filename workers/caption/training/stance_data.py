"""Stance-labelled captions (critical / supportive / neutral toward the police), their held-out
parts, and the stance figures. No torch.

Formats: the shared police-stance folder (`stance.tsv`: tab-separated, no quoting, columns
`text`, `text_no_tags`, `label`, `label_source`, `source_path`, ...) or one file of your own,
`.tsv` or `.csv`, with a header naming `text` (or `text_no_tags`, which wins) and `label`;
`label_source` and `source_path` are optional.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from workers.caption.training.data import CaptionDataError
from workers.domain import STANCES

#: Hashtag-labelled sources the stance head is fitted on: the two large events (April 2021
#: Brooklyn Center protests, critical; 2014-15 #PoliceLivesMatter/Ferguson, supportive). The
#: hashtag rows of every other source (2020 protests, #BLM, #DCprotests...) are held out as
#: "other events": a head that learnt the event instead of the stance fails there.
FIT_SOURCES = frozenset({"notebooks/labs34_notebooks/unconfirmed.csv", "policelivesmatter.csv"})
#: Held-out parts, by name (what `backfire caption eval --task stance --split` takes).
PARTS = ("human", "events")


@dataclass(frozen=True)
class StanceRows:
    texts: list[str]
    labels: list[str]  # one of STANCES
    label_sources: list[str]  # "human", "hashtag" or "given"
    source_paths: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def y(self) -> np.ndarray:
        return np.array([STANCES.index(lab) for lab in self.labels], dtype=int)

    def subset(self, mask: np.ndarray | list[bool]) -> StanceRows:
        idx = np.flatnonzero(np.asarray(mask, dtype=bool))
        return StanceRows([self.texts[i] for i in idx], [self.labels[i] for i in idx],
                          [self.label_sources[i] for i in idx],
                          [self.source_paths[i] for i in idx], self.source)


def load_stance(data: Path) -> StanceRows:
    path = Path(data)
    if path.is_dir():
        path = path / "stance.tsv"
    if not path.is_file():
        raise CaptionDataError(f"no stance data at {data}: expected stance.tsv in the folder, "
                               "or a .tsv/.csv file with columns text,label")
    tsv = path.suffix.lower() in (".tsv", ".tab")
    with path.open(encoding="utf-8", newline="") as f:
        reader = (csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv
                  else csv.DictReader(f))
        names = set(reader.fieldnames or ())
        column = "text_no_tags" if "text_no_tags" in names else "text"
        if not {column, "label"} <= names:
            raise CaptionDataError(f"{path}: needs a header with columns text (or text_no_tags) "
                                   "and label")
        texts, labels, sources, paths = [], [], [], []
        for i, row in enumerate(reader, start=2):
            label = (row["label"] or "").strip().lower()
            if label not in STANCES:
                raise CaptionDataError(
                    f"{path}:{i}: label must be one of {', '.join(STANCES)}, got {label!r}")
            texts.append((row[column] or "").strip())
            labels.append(label)
            sources.append((row.get("label_source") or "given").strip())
            paths.append((row.get("source_path") or "").strip())
    if not texts:
        raise CaptionDataError(f"{path} holds no captions")
    return StanceRows(texts, labels, sources, paths, str(path))


def _in_second_half(text: str) -> bool:
    """A fixed half of the human-labelled rows, by the text's hash (not by row order)."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 2 == 1


def parts(rows: StanceRows) -> dict[str, np.ndarray]:
    """Boolean masks: `fit` (what the head is fitted on), `human` (the held-out half of the
    human-labelled rows) and `events` (hashtag rows of the events not fitted on)."""
    human = np.array([s == "human" for s in rows.label_sources])
    hashtag = np.array([s == "hashtag" for s in rows.label_sources])
    # The file names some sources with their commit: "unconfirmed.csv (commit b950…)".
    fit_source = np.array([p.split(" (commit")[0].strip() in FIT_SOURCES
                           for p in rows.source_paths])
    second = np.array([_in_second_half(t) for t in rows.texts])
    return {
        "fit": (hashtag & fit_source) | (human & ~second),
        "human": human & second,
        "events": hashtag & ~fit_source,
    }


# --- figures -----------------------------------------------------------------------------------
def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC of `score` for y == 1 against y == 0 (ties count half); nan without both."""
    y, score = np.asarray(y), np.asarray(score, dtype=float)
    pos, neg = score[y == 1], score[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    # average ranks for ties
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@dataclass(frozen=True)
class StanceFigures:
    n: int
    counts: dict[str, int]
    #: ROC-AUC of p(critical) / (p(critical) + p(supportive)), critical vs supportive rows.
    auc: float
    #: Mean F1 over the classes present in the labels, predicting the most probable class.
    macro_f1: float
    accuracy: float
    #: rows: true class, columns: predicted, in STANCES order.
    confusion: list[list[int]]

    def as_dict(self) -> dict:
        return asdict(self)


def stance_figures(labels: np.ndarray, probs: np.ndarray) -> StanceFigures:
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float).reshape(len(y), 3)
    pred = p.argmax(axis=1)
    cs = (y == 0) | (y == 1)
    ratio = p[:, 0] / np.maximum(p[:, 0] + p[:, 1], 1e-12)
    auc = roc_auc((y[cs] == 0).astype(int), ratio[cs])
    f1s = []
    for k in sorted(set(y.tolist())):
        tp = int(((pred == k) & (y == k)).sum())
        fp = int(((pred == k) & (y != k)).sum())
        fn = int(((pred != k) & (y == k)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    confusion = [[int(((y == a) & (pred == b)).sum()) for b in range(3)] for a in range(3)]
    return StanceFigures(
        n=len(y),
        counts={s: int((y == k).sum()) for k, s in enumerate(STANCES)},
        auc=round(auc, 4) if auc == auc else float("nan"),
        macro_f1=round(float(np.mean(f1s)), 4) if f1s else 0.0,
        accuracy=round(float((pred == y).mean()), 4) if len(y) else 0.0,
        confusion=confusion,
    )
