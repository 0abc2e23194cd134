"""The `backfire` command line: `app` (the Typer app; errors become exit codes there, once),
`common` (console, exit codes, the settings overlay, shared options), and one module per command
group: `score`, `model` (weights and scenes), `service` (serve, worker, reconcile, apikey, db),
`report`, `alert`, `caption`. Heavy imports happen inside the commands."""
