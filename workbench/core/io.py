"""Files: atomic writes (a temporary file in the same folder, then a rename, so an interrupted
write never leaves a half-written file under the final name), and the checks on files a user
names (read them, or check an output path) that give one-line errors before any compute."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from workbench.core.errors import WorkbenchError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_umask())  # mkstemp creates 0600; use the normal mode
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomically(path, text.encode("utf-8"))


def read_user_text(path: str | os.PathLike[str], what: str) -> str:
    """The text of a file a user named (a scenario file, a hypothesis, a run record...), or a
    ``WorkbenchError`` of one line saying what is wrong: missing, a folder, unreadable, not UTF-8.
    ``what`` names the file in the message (``"scenario file"``)."""
    path = Path(path)
    if not path.exists():
        raise WorkbenchError(f"no {what} at {path}")
    if path.is_dir():
        raise WorkbenchError(f"{path} is a folder, not a {what}: give the file itself")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise WorkbenchError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise WorkbenchError(f"{what} {path} is not UTF-8 text (byte {error.start}, line {line}): "
                             "save it as UTF-8") from None


def check_output_path(path: str | os.PathLike[str], what: str, *, folder: bool = False) -> Path:
    """Check, before any compute, that ``path`` can be written as a ``what`` (a file, or with ``folder`` a
    folder): it is not the other kind of thing already, and no part of its parent is a file."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a file" if folder else "a folder"
        raise WorkbenchError(f"{path} is {kind}, so it cannot be written as the {what}: give another path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise WorkbenchError(f"cannot write the {what} at {path}: {parent} is a file, not a folder")
            break
    return path


def read_user_json(path: str | os.PathLike[str], what: str) -> Any:
    """The JSON value of a file a user named (``read_user_text``), or a one-line ``WorkbenchError``."""
    text = read_user_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise WorkbenchError(f"{what} {path} is not valid JSON (line {error.lineno}): {error.msg}") from None
