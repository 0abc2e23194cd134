"""sha256 of a file, read in 1 MiB blocks (weights files are hundreds of MB), and a memo of it
keyed by the file's identity so a start-up does not read 600 MB to name a model it named before."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def memo_file_sha256(path: Path, memo_dir: Path) -> str:
    """`file_sha256(path)`, remembered in `memo_dir` under the file's real path, size, mtime and
    inode (the check git and make rely on): a file rewritten in place gets a new mtime and is
    hashed again. A memo that cannot be written only costs the next call the read."""
    st = os.stat(path)
    ident = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    memo = memo_dir / "sha256" / hashlib.sha256(ident.encode()).hexdigest()[:32]
    try:
        known = memo.read_text(encoding="ascii").strip()
        if len(known) == 64:
            return known
    except OSError:
        pass
    digest = file_sha256(path)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(digest, encoding="ascii")
        os.replace(tmp, memo)
    except OSError:
        pass
    return digest
