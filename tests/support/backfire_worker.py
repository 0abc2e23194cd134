"""`backfire worker`, the real command (its options, its exit codes), with the test hooks of
`tests.support.crashy_app` in place: `python -m tests.support.backfire_worker worker ...`."""

from __future__ import annotations

import tests.support.crashy_app  # noqa: F401  (patches the pipeline before the pool forks)
from workers.cli.app import main

if __name__ == "__main__":
    main()
