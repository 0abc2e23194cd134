"""Importing the engine's light modules must not pull in torch (DESIGN: only the model modules
do, lazily), so the CLI starts fast and the API process stays small."""

import subprocess
import sys


def test_light_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import workers.cli.app, workers.scoring.runner, workers.scoring.pipeline\n"
        "import workers.sources, workers.caption, workers.scoring.verdict, workers.media.fetcher\n"
        "import workers.media.decode, workers.scoring.writers, workers.scenes.prompts\n"
        "import workers.store, workers.notify.rules, workers.notify.alerts, workers.report\n"
        "import workers.notify.watch, workers.queue.ingest, workers.queue.app, workers.net.post\n"
        "print(sorted(m for m in ('torch', 'open_clip', 'torchvision', 'sklearn') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
