"""Files that hold secrets or their hashes: replaced atomically, readable by their owner only.

API tokens, dashboard users and broker credentials are all written this way, so a
reader (a server re-reading the file, a crash halfway) never sees half a file and
no other user can read it at any moment, the temporary file included.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600


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
