"""Scoring a batch: the one pipeline (`pipeline`: decode, scenes, caption, verdict, with dedup),
the batch runner over a reader (`runner`), the verdict policy (`verdict`) and the row writers
(`writers`)."""
