"""Backfire's HTTP API (FastAPI). The HTTP boundary only: it stores uploads durably and enqueues
post ids; workers do the scoring. Never imports torch."""
