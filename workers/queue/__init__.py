"""The queue side: the Celery app (`app`, built lazily), thin tasks (`tasks`), publishing post ids
(`publish`), the reconciler (`reconcile`) and the one ingest path (`ingest`). Only `tasks` loads
the pipeline (and torch), inside the worker process."""
