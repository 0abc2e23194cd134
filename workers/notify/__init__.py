"""Telling people: alert rules and their evaluation (`rules`), alerts of a `backfire score` run
(`alerts`) and of the workers (`watch`), signed webhooks (`webhooks`), and the one retry ladder
(`backoff`)."""
