"""Output folders for files nasflow writes (exported models, reports): named after a study, checked early."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from nasflow.errors import ConfigError


def study_folder(parent: str, study_name: str) -> Path:
    """``parent/<study name>``, with characters unsafe in file names replaced."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name).strip("._") or "study"
    return Path(parent) / safe


def prepare_output_dir(path: str | os.PathLike[str], flag: str = "--output-dir") -> Path:
    """Create ``path`` if needed and check that files can be written there, before any long work.

    Raises:
        ConfigError: it is a file, or it cannot be created or written to.
    """
    folder = Path(path).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output folder {str(folder)!r} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".nasflow-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"output folder {str(folder)!r} is not writable ({exc.strerror or exc}); "
            f"choose another with {flag}"
        ) from None
    return folder
