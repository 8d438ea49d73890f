"""Files that hold secrets or their hashes: replaced atomically, readable by their owner only.

API tokens, dashboard users and broker credentials are all written this way, so a
reader (a server re-reading the file, a crash halfway) never sees half a file and
no other user can read it at any moment, the temporary file included.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

PRIVATE_MODE = 0o600

_Model = TypeVar("_Model", bound=BaseModel)


class PrivateFileError(ValueError):
    """A private file that exists but cannot be read, or does not hold what it should.

    Its text names the file and says which; callers re-raise it as their own error.
    """


def read_private(path: Path, model: type[_Model], what: str) -> _Model | None:
    """The ``model`` in JSON file ``path`` (``what`` names it in errors), or None if absent.

    Never a silent default for a damaged file: a tokens, users or credentials file
    that reads as empty would lock everyone out, or let a regenerated one in.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PrivateFileError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise PrivateFileError(f"{path} is not a valid {what}: {exc}") from exc


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: 0600 from creation, fsynced, renamed into place.

    Raises :class:`OSError`; callers translate it into their own error.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 already: the secret is never readable by others.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            os.fchmod(out.fileno(), PRIVATE_MODE)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
