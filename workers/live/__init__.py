"""The live path: `backfire watch` (pollers -> the one pipeline -> verdicts stored -> alert rules
as verdicts arrive, with lag as a first-class figure) and `backfire replay` (an export on its own
clock: when would the alert have fired?). Above the queue and the alerts, beside the API: it
composes sources, scoring, the store, notify and (for `--queue`) the workers."""
