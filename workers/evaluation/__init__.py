"""Evaluating and teaching the pipeline on a user's labelled posts: reading labels (`labels`,
`store`), embedding the labelled photos through the pipeline with the disk cache (`collect`),
the figures (`metrics`, `evaluate`), per-scene calibration (`calibrate`) and few-shot scene
heads (`fewshot`). The commands are in workers/cli/evaluate.py; the page in
workers/report/eval_page.py."""
