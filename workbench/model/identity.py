"""Identities: stable strings naming what a model, adapter or SAE computes with.

An identity is written into cache keys (captures, calibrations) and run records, so it must move when
the numbers can move and stay put otherwise. It is computed from the files that compute (weights,
configuration, tokenizer), never from documentation: editing a README, model card or training notes
keeps it. The file sets are named in ``workbench.core.constants`` (``MODEL_WEIGHT_FILES``,
``MODEL_CONFIG_FILES``, ``MODEL_TOKENIZER_FILES``, ``ADAPTER_WEIGHT_FILES``, ``ADAPTER_CONFIG_FILENAME``,
``SAE_IDENTITY_FILES``).

Scheme ``v2`` (the current one) is marked by a prefix::

    v2/default:<digest>                 the embedded default (its GGUF file, which holds config and tokenizer)
    v2/local:<digest>                   a model folder (weights used, config, tokenizer files)
    v2/local:<digest>#gguf=<file>       a GGUF file in a folder (the GGUF, plus any config/tokenizer files)
    v2/hf:<id>@<commit or revision>     a Hugging Face id (a commit hash names its files; no download here)
    ...+adapter:<digest>                a merged LoRA adapter (its weights and adapter_config.json)
    v2/sae:<digest>                     an SAE on disk (sae_weights.safetensors and cfg.json)
    v2/sae-release:<release>/<id>       an SAE from a sae-lens release

An identity without the prefix was computed the old way (an adapter by its whole folder, documentation
included; the default model by its file name and size; an SAE by its weights file alone): records that
hold one keep loading, and ``old_identity_note`` says what it was. Old and v2 identities of the same
weights differ, so they cannot be compared (``compare_identities`` compares only v2 with v2).

Hashing a multi-hundred-megabyte file on every load is slow, so ``file_digest`` caches each file's
sha256 on disk under ``<cache>/digests/``, keyed by the file's path, size, modification time and inode;
any of those changing recomputes it (a file written in the last two seconds is hashed but not cached).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from workbench.core.constants import DIGEST_CACHE_FOLDER, IDENTITY_PREFIX, IDENTITY_SCHEME, cache_dir
from workbench.core.io import write_text_atomically

log = logging.getLogger(__name__)

__all__ = [
    "DIGEST_LENGTH", "IdentityKind", "RACY_WINDOW_NS", "compare_identities", "digest_cache_path", "file_digest",
    "files_digest", "identity_scheme", "old_identity_note", "v2_identity",
]

#: Hex digits of a digest kept in an identity (64 bits: collisions are not a concern at this scale).
DIGEST_LENGTH = 16
#: A file modified this recently (ns) when hashed is not cached: a second write in the same timestamp tick
#: could change its bytes and keep its size and mtime.
RACY_WINDOW_NS = 2_000_000_000
#: Bytes read at a time while hashing.
_CHUNK = 1 << 20

IdentityKind = Literal["model", "sae"]

#: What an old (pre-v2) identity was computed from, per kind.
_OLD_WAY = {
    "model": "the base weights by file name and size, an adapter by its whole folder, documentation included",
    "sae": "the SAE's weights file alone, its cfg.json not included",
}


# ----------------------------------------------------------------------------- file digests


def _hash_file(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks (the slow step the disk cache saves)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def digest_cache_path(path: Path) -> Path:
    """Where the cached digest of a file lives: ``<cache>/digests/<sha256 of its resolved path>.json``."""
    name = hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()[:32]
    return cache_dir() / DIGEST_CACHE_FOLDER / f"{name}.json"


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes, cached on disk by (path, size, mtime_ns, inode).

    A cached digest is used only when the file's resolved path, size, modification time (ns) and inode
    all match what was recorded; otherwise the file is read again and the cache entry replaced (written
    atomically, so a concurrent reader sees the old entry or the new one, never half of one). A file
    modified less than ``RACY_WINDOW_NS`` before it is hashed is not cached yet.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}
    entry_path = digest_cache_path(path)
    try:
        entry = json.loads(entry_path.read_text(encoding="utf-8"))
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in key.items()) \
                and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64:
            return entry["sha256"]
    except (OSError, ValueError):
        pass  # no entry yet, or an unreadable one: compute
    started_ns = time.time_ns()
    sha = _hash_file(path)
    if started_ns - stat.st_mtime_ns < RACY_WINDOW_NS:
        # Written moments ago: another write within the file system's timestamp granularity could keep
        # size and mtime while changing the bytes, so do not trust (path, size, mtime) for it yet (as git
        # treats "racily clean" files). It is cached on a later call.
        return sha
    after = path.stat()
    if (after.st_size, after.st_mtime_ns, after.st_ino) != (stat.st_size, stat.st_mtime_ns, stat.st_ino):
        return sha  # changed while it was read: the digest may be of neither version, so keep no entry
    try:
        write_text_atomically(entry_path, json.dumps({**key, "sha256": sha}))
    except OSError as error:  # a read-only cache only costs speed
        log.debug("cannot cache the digest of %s: %s", path, error)
    return sha


def files_digest(folder: Path, names: Iterable[str]) -> str:
    """A digest over the given files of a folder (name and content of each, in sorted order; missing ones
    are skipped), ``DIGEST_LENGTH`` hex digits."""
    lines = [f"{name}\t{file_digest(folder / name)}\n" for name in sorted(set(names)) if (folder / name).is_file()]
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()[:DIGEST_LENGTH]


# ----------------------------------------------------------------------------- schemes


def v2_identity(body: str) -> str:
    """An identity of the current scheme: ``v2/`` + body."""
    return IDENTITY_PREFIX + body


def identity_scheme(identity: str) -> str:
    """``v2`` for an identity of the current scheme; ``old`` for one computed the old way (no prefix)."""
    return IDENTITY_SCHEME if identity.startswith(IDENTITY_PREFIX) else "old"


def old_identity_note(identity: str, kind: IdentityKind = "model") -> str | None:
    """A sentence for an identity computed the old way (None for a v2 one)."""
    if identity_scheme(identity) == IDENTITY_SCHEME:
        return None
    label = "Model identity" if kind == "model" else "SAE identity"
    return (f"{label} computed the old way ({_OLD_WAY[kind]}); rerun to record a {IDENTITY_SCHEME} identity, "
            "computed from weights and configuration only.")


def compare_identities(pairs: Sequence[tuple[str, str, str]]) -> list[str]:
    """``(what, a, b)`` triples whose identities differ, as lines, for identities that are both v2.

    An old identity and a v2 one of the same weights differ by construction, so such pairs are not
    compared (``old_identity_note`` says the old one is old); two old ones are not compared either.
    """
    return [f"{what} identity: {a} vs {b}" for what, a, b in pairs
            if identity_scheme(a) == IDENTITY_SCHEME and identity_scheme(b) == IDENTITY_SCHEME and a != b]
