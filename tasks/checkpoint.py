"""Save and load a run's state atomically, with a lock on the run directory.

Each save writes `checkpoint-<seq>.json` (temporary file in the same directory, flush, fsync, os.replace, fsync of
the directory), holding a schema version and a checksum of the state, and keeps the newest few. A corrupt or
truncated newest checkpoint falls back to the previous valid one, loudly; if checkpoints exist but none is
valid, loading fails rather than silently starting over.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
KEEP_LAST = 3
PREFIX, SUFFIX = "checkpoint-", ".json"


class CheckpointError(RuntimeError):
    pass


class RunLockedError(CheckpointError):
    pass


def _checksum(state: Any) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    """Write a file so that a crash leaves either the old content or the new, never a torn file.
    durable=False skips the fsyncs: for files derived from a checkpoint, which a resume rewrites anyway."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())
    os.replace(temporary, path)
    if not durable:
        return
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class RunDirectory:
    """A run's directory: `with RunDirectory(path) as run:` holds its lock; `run.save(state)`, `run.load()`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_handle = None

    def __enter__(self) -> "RunDirectory":
        self.lock()
        return self

    def __exit__(self, *exc_info):
        self.unlock()

    def lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLockedError(f"{self.path} is in use by {holder}; wait for it to finish or stop it first "
                                 "(two processes on one run would corrupt it)") from None
        for stale in self.path.glob(f".{PREFIX}*.tmp-*"):  # left by a writer killed before its replace
            stale.unlink(missing_ok=True)
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        self._lock_handle = handle

    def unlock(self) -> None:
        if self._lock_handle:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def _files(self) -> list[tuple[int, Path]]:
        found = []
        for entry in self.path.glob(f"{PREFIX}*{SUFFIX}"):
            number = entry.name[len(PREFIX):-len(SUFFIX)]
            if number.isdigit():
                found.append((int(number), entry))
        return sorted(found)

    def save(self, state: dict) -> int:
        if self._lock_handle is None:
            raise CheckpointError("save() needs the run directory's lock: use `with RunDirectory(path) as run:`")
        files = self._files()
        sequence = files[-1][0] + 1 if files else 1
        document = {"schema_version": SCHEMA_VERSION, "sequence": sequence, "checksum": _checksum(state),
                    "state": state}
        atomic_write_text(self.path / f"{PREFIX}{sequence:06d}{SUFFIX}", json.dumps(document))
        for _, old in files[: max(0, len(files) + 1 - KEEP_LAST)]:
            old.unlink(missing_ok=True)
        return sequence

    def load(self) -> dict | None:
        """The newest valid state; None when the run has no checkpoint yet."""
        files = self._files()
        problems = []
        for _, path in reversed(files):
            problem = None
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
                if document.get("schema_version") != SCHEMA_VERSION:
                    problem = f"schema version {document.get('schema_version')}, expected {SCHEMA_VERSION}"
                elif _checksum(document.get("state")) != document.get("checksum"):
                    problem = "checksum mismatch"
            except (OSError, ValueError, AttributeError) as exc:
                problem = f"unreadable ({type(exc).__name__}: {exc})"
            if problem is None:
                if problems:
                    print(f"WARNING: checkpoint fallback in {self.path}: " + "; ".join(problems) +
                          f"; resuming from {path.name}", file=sys.stderr)
                return document["state"]
            problems.append(f"{path.name} is {problem}")
        if problems:
            raise CheckpointError(f"no valid checkpoint in {self.path}: " + "; ".join(problems) +
                                  ". Nothing was deleted; start over with --fresh if the run cannot be repaired.")
        return None

    def clear(self) -> None:
        for _, path in self._files():
            path.unlink()
