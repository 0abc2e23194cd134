"""Run the real `backfire` console script in a subprocess with a tiny real CLIP checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import link_caption_encoder

BACKFIRE = str(Path(sys.executable).with_name("backfire"))


@pytest.fixture
def cli_env(
    tmp_path: Path, tiny_clip: tuple[Path, Path], caption_encoder_cache: Path,
    fast_caption_env: dict[str, str],
) -> dict[str, str]:
    """The tiny CLIP and the v1 caption model (these tests are about the command, not the
    caption model); a test of the default pipeline sets BACKFIRE_CAPTION_MODEL_FILE=""."""
    cfg, ckpt = tiny_clip
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFIRE_")}
    env.update(
        BACKFIRE_MODEL_CONFIG_FILE=str(cfg),
        BACKFIRE_CHECKPOINT=str(ckpt),
        BACKFIRE_OFFLINE="1",
        BACKFIRE_CACHE_DIR=str(link_caption_encoder(tmp_path / "cache", caption_encoder_cache)),
        BACKFIRE_DATA_DIR=str(tmp_path / "data"),
        **fast_caption_env,
    )
    return env


@pytest.fixture
def run_cli(cli_env: dict[str, str], tmp_path: Path):
    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BACKFIRE, *args], env={**cli_env, **(env or {})}, cwd=tmp_path,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    return run


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving a temp folder."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
