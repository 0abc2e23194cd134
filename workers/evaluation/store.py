"""Labelled posts from the store: the labels given through `PUT /v1/posts/{id}/labels`, the
posts' captions and their images in the media store (by sha256: never fetched again)."""

from __future__ import annotations

from workers.config import Settings
from workers.domain import Post, clean_hashtag
from workers.errors import InputFormatError
from workers.evaluation.labels import LabelError, LabelledPost, LabelledSet, labels_from


def labelled_from_store(
    settings: Settings, known_scenes: list[str], hashtag: str | None, *, skip_bad: bool = False
) -> LabelledSet:
    from workers.store import open_database
    from workers.store.labels import labelled_posts

    db = open_database(settings)
    tag = clean_hashtag(hashtag)
    out = LabelledSet([], f"store{f' #{tag}' if tag else ''}")
    problems: list[tuple[str, str]] = []
    try:
        for p, values in labelled_posts(db, tag):
            where = f"store:{p.id} (post {p.post_id})"
            try:
                labels = labels_from(values, known_scenes)
            except LabelError as e:  # e.g. a scene since removed from the YAML
                problems.append((where, str(e)))
                continue
            if labels.empty:
                out.unlabelled += 1
                continue
            post = Post(
                post_id=p.post_id, image=p.image_url, caption=p.caption or "",
                hashtag=p.hashtag, created_at=p.created_at, author=p.author,
            )  # fmt: skip
            out.posts.append(LabelledPost(post, labels, where, media_sha256=p.media_sha256))
    finally:
        db.dispose()
    if problems and not skip_bad:
        shown = "\n".join(f"  {w}: {m}" for w, m in problems[:10])
        raise InputFormatError(
            f"{len(problems)} stored label(s) cannot be used:\n{shown}\n"
            "Fix them through the API, or pass --skip-bad to leave them out."
        )
    out.skipped = problems
    return out
