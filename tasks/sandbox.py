"""Host an untrusted Python module in a contained worker process and call its functions with data.

Every solution and every self-rewritten agent is code an LLM wrote, so it is treated as hostile: it runs in a
fresh interpreter, in its own session, with an allow-listed environment (no API keys), resource limits, an
unprivileged uid when we are root, a wall clock enforced from here, and (where bubblewrap is installed) no
network, a read-only system and nothing of the project visible. Only JSON data crosses the pipe.
"""
from __future__ import annotations

import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

WORKER = Path(__file__).with_name("sandbox_worker.py")
SANDBOX_ROOT = "/sandbox"            # where the work directory appears inside bubblewrap
WORKER_INSIDE = "/opt/sia/sandbox_worker.py"
UNPRIVILEGED_UID = 65534
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # one reply from the worker; larger is invalid_output
ENVIRONMENT = {                      # the whole environment the candidate sees
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",           # reproducible set/dict order, hence reproducible scores
    "PYTHONDONTWRITEBYTECODE": "1",
}


@dataclass
class Limits:
    call_timeout: float = 5.0        # wall seconds for one call (host-function time excluded)
    load_timeout: float = 10.0       # wall seconds to start the worker and import the module
    total_timeout: float = 300.0     # wall seconds for the whole session
    cpu_seconds: int = 120
    memory_mb: int = 1024            # address space; a normal solution must still score the same under it
    file_size_mb: int = 16
    open_files: int = 64
    processes: int = 32              # effective only for an unprivileged uid
    output_tail_bytes: int = 4096


class SandboxError(Exception):
    """A fatal outcome for the worker. status: load_error, missing_function, timeout, memory, crash, invalid_output."""

    def __init__(self, status: str, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class CandidateException(SandboxError):
    """The candidate's function raised; the worker lives on and may be called again."""

    def __init__(self, message: str, traceback: str = ""):
        super().__init__("exception", message)
        self.traceback = traceback


@dataclass(frozen=True)
class Isolation:
    bubblewrap: bool
    drop_privileges: bool
    missing: tuple[str, ...] = field(default_factory=tuple)


_isolation: Isolation | None = None
# What every sandbox in this process printed, so the benchmark's result can carry it as feedback (never as a score).
OUTPUT_LOG: list[dict[str, str]] = []


def isolation() -> Isolation:
    """Which protections this machine gives; says once, plainly, which are off."""
    global _isolation
    if _isolation is None:
        root = os.geteuid() == 0
        bwrap = shutil.which("bwrap") is not None and _bubblewrap_works(root)
        missing = []
        if not bwrap:
            missing.append("no bubblewrap: the candidate can reach the network and read the file system "
                           "(install it: apt-get install bubblewrap)")
        drop = root and (bwrap or _world_readable(Path(sys.base_prefix)))
        if root and not drop:
            missing.append("running as root without bubblewrap, with the interpreter under a private directory: "
                           "the worker keeps root, so the process-count limit is ignored")
        _isolation = Isolation(bwrap, drop, tuple(missing))
        for line in missing:
            print(f"sandbox: protection off: {line}", file=sys.stderr)
    return _isolation


def _bubblewrap_works(root: bool) -> bool:
    command = ["bwrap", "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid"]
    if not root:
        command.append("--unshare-user-try")
    try:
        return subprocess.run(command + ["true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _world_readable(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [path, *path.parents])


def _bind_with_open_parents(target: str) -> list[str]:
    """bwrap creates missing parents of a bind mode 0700, which the unprivileged uid cannot cross."""
    args = []
    for parent in reversed(Path(target).parents):
        if str(parent) != "/":
            args += ["--perms", "0755", "--dir", str(parent)]
    return args + ["--ro-bind", target, target]


def _bubblewrap_prefix(workdir: str) -> list[str]:
    args = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--clearenv"]
    if os.geteuid() != 0:
        args.append("--unshare-user-try")
    for name, value in ENVIRONMENT.items():
        args += ["--setenv", name, value]
    args += ["--setenv", "HOME", SANDBOX_ROOT]
    for system_dir in ("/usr", "/bin", "/lib", "/lib64", "/lib32"):
        if os.path.islink(system_dir):
            args += ["--symlink", os.readlink(system_dir), system_dir]
        elif os.path.isdir(system_dir):
            args += ["--ro-bind", system_dir, system_dir]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}):
        if not prefix.startswith("/usr/"):
            args += _bind_with_open_parents(prefix)
    args += ["--ro-bind", str(WORKER), WORKER_INSIDE, "--bind", workdir, SANDBOX_ROOT, "--chdir", SANDBOX_ROOT]
    return args


class _Tail:
    """Drains a pipe in a thread and keeps only its last bytes, so a flood costs nothing but CPU."""

    def __init__(self, stream, limit: int):
        self.limit, self.data = limit, bytearray()
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream):
        for chunk in iter(lambda: stream.read(65536), b""):
            self.data += chunk
            if len(self.data) > 2 * self.limit:
                del self.data[:-self.limit]

    def text(self) -> str:
        return bytes(self.data[-self.limit:]).decode("utf-8", "replace")


def _strict_json(line: bytes) -> Any:
    def refuse(constant):
        raise ValueError(f"{constant} is not allowed")
    return json.loads(line, parse_constant=refuse)


class Sandbox:
    """One contained worker hosting one module. Use as a context manager."""

    def __init__(self, module_path: str | os.PathLike, limits: Limits | None = None,
                 host_functions: dict[str, Callable[..., Any]] | None = None,
                 extra_files: dict[str, str | os.PathLike] | None = None):
        self.module_path = Path(module_path)
        self.limits = limits or Limits()
        self.host_functions = host_functions or {}
        self.extra_files = extra_files or {}
        self.process: subprocess.Popen | None = None
        self._next_id = 0
        self._buffer = b""
        self._stdout = self._stderr = None

    # ----- life cycle -------------------------------------------------------------------------
    def __enter__(self) -> "Sandbox":
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def start(self):
        if not self.module_path.is_file():
            raise SandboxError("load_error", f"no such file: {self.module_path}")
        iso = isolation()
        self.workdir = tempfile.mkdtemp(prefix="sia-sandbox-")
        shutil.copyfile(self.module_path, os.path.join(self.workdir, "solution.py"))
        for name, source in self.extra_files.items():
            shutil.copyfile(source, os.path.join(self.workdir, os.path.basename(name)))
        if iso.drop_privileges:
            for entry in [self.workdir, *(os.path.join(self.workdir, n) for n in os.listdir(self.workdir))]:
                os.chown(entry, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        inside = SANDBOX_ROOT if iso.bubblewrap else self.workdir
        request_r, self._request_w = os.pipe()
        self._response_r, response_w = os.pipe()
        worker_limits = {k: v for k, v in asdict(self.limits).items()} | {"drop_privileges": iso.drop_privileges}
        worker = WORKER_INSIDE if iso.bubblewrap else str(WORKER)
        # A fresh interpreter isolated like `python -I` (no user site, no script directory on sys.path, and an
        # environment we build from an allow-list, so no PYTHON* variable of ours reaches it), but spelled
        # -s -P: -I would also ignore PYTHONHASHSEED, and a fixed hash seed keeps set and dict order, and so a
        # solution's score, the same from run to run.
        command = [sys.executable, "-s", "-P", worker, str(request_r), str(response_w), json.dumps(worker_limits)]
        environment = dict(ENVIRONMENT, HOME=inside)
        if iso.bubblewrap:
            command = _bubblewrap_prefix(self.workdir) + command
        self._session_deadline = time.monotonic() + self.limits.total_timeout
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(request_r, response_w), start_new_session=True, cwd=self.workdir, env=environment)
        os.close(request_r)
        os.close(response_w)
        self._stdout = _Tail(self.process.stdout, self.limits.output_tail_bytes)
        self._stderr = _Tail(self.process.stderr, self.limits.output_tail_bytes)
        reply = self._request({"op": "load", "path": f"{inside}/solution.py", "workdir": inside},
                              self.limits.load_timeout)
        if "load_error" in reply:
            error = reply["load_error"]
            self.close()
            raise SandboxError("load_error", f"{error.get('type')}: {error.get('message')}\n"
                                             f"{_last_lines(error.get('traceback', ''), 6)}")

    def close(self):
        if self.process is None:
            return
        for fd in (self._request_w, self._response_r):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the whole group; bubblewrap's PID namespace takes the rest
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        for tail in (self._stdout, self._stderr):
            tail.thread.join(timeout=2)
        if self.stdout_tail or self.stderr_tail:
            OUTPUT_LOG.append({"stdout": self.stdout_tail, "stderr": self.stderr_tail})
        self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ----- calls -------------------------------------------------------------------------------
    def require(self, *names: str):
        for name in names:
            if self.signature(name) is None:
                raise SandboxError("missing_function",
                                   f"the solution must define a top-level function `{name}`")

    def signature(self, name: str) -> list[str] | None:
        value = self._request({"op": "signature", "fn": name}, self.limits.call_timeout).get("ok")
        if value is not None and not (isinstance(value, list) and all(isinstance(p, str) for p in value)):
            self._fail("invalid_output", "the worker answered a signature request with something else")
        return value

    def call(self, function: str, *args: Any) -> Any:
        reply = self._request({"op": "call", "fn": function, "args": list(args)}, self.limits.call_timeout)
        if "ok" in reply:
            return reply["ok"]
        if "exception" in reply:
            error = reply["exception"] if isinstance(reply["exception"], dict) else {}
            raise CandidateException(f"{error.get('type')}: {error.get('message')}",
                                     _last_lines(str(error.get("traceback", "")), 8))
        if "missing" in reply:
            self._fail("missing_function", f"the solution must define a top-level function `{function}`")
        if "memory" in reply:
            self._fail("memory", f"the solution ran out of memory (limit {self.limits.memory_mb} MB)")
        self._fail("invalid_output", str(reply.get("invalid_output", "malformed reply"))[:500])

    @property
    def stdout_tail(self) -> str:
        return self._stdout.text() if self._stdout else ""

    @property
    def stderr_tail(self) -> str:
        return self._stderr.text() if self._stderr else ""

    # ----- protocol ----------------------------------------------------------------------------
    def _request(self, message: dict, timeout: float) -> dict:
        if self.process is None:
            raise SandboxError("crash", "the worker is not running")
        self._next_id += 1
        message["id"] = self._next_id
        self._send(message)
        call_budget = timeout
        while True:
            started = time.monotonic()
            reply = self._receive(call_budget)
            call_budget -= time.monotonic() - started
            if "host" in reply:
                self._serve_host_call(reply)  # not counted against the call's wall clock
                continue
            if reply.get("id") != message["id"]:
                self._fail("invalid_output", "the worker answered out of turn")
            return reply

    def _serve_host_call(self, request: dict):
        name, args = request.get("host"), request.get("args")
        function = self.host_functions.get(name) if isinstance(name, str) else None
        if function is None or not isinstance(args, list):
            self._send({"host_error": f"no host function {name!r}"})
            return
        try:
            self._send({"host_result": function(*args)})
        except SandboxError:
            raise
        except Exception as exc:  # the host function's own refusal, e.g. a budget cap, goes back as an error
            self._send({"host_error": f"{type(exc).__name__}: {exc}"[:2000]})

    def _send(self, message: dict):
        data = json.dumps(message, allow_nan=False).encode() + b"\n"
        try:
            os.write(self._request_w, data) if len(data) < 65536 else self._write_all(data)
        except (BrokenPipeError, OSError):
            self._fail_from_exit()

    def _write_all(self, data: bytes):
        view = memoryview(data)
        while view:
            written = os.write(self._request_w, view)
            view = view[written:]

    def _receive(self, timeout: float) -> dict:
        deadline = min(time.monotonic() + max(timeout, 0), self._session_deadline)
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail("timeout", "the solution did not answer in time "
                                      f"(limit {timeout:.1f} s per call, {self.limits.total_timeout:.0f} s in all)")
            ready, _, _ = select.select([self._response_r], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._response_r, 65536)
            if not chunk:
                self._fail_from_exit()
            self._buffer += chunk
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                self._fail("invalid_output", f"a reply larger than {MAX_MESSAGE_BYTES} bytes")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            reply = _strict_json(line)
        except ValueError as exc:
            self._fail("invalid_output", f"the reply was not plain JSON data ({exc})")
        if not isinstance(reply, dict):
            self._fail("invalid_output", "malformed reply")
        return reply

    def _fail_from_exit(self):
        code = self.process.wait() if self.process else None
        for tail in (self._stdout, self._stderr):
            tail.thread.join(timeout=1)
        # bubblewrap reports a child killed by signal N as exit code 128+N
        signal_number = -code if code is not None and code < 0 else (code - 128 if code and code > 128 else None)
        if signal_number == signal.SIGXCPU:
            self._fail("timeout", f"the solution used up its CPU time ({self.limits.cpu_seconds} s)")
        self._fail("crash", f"the worker exited early (exit code {code}); "
                            f"stderr: {_last_lines(self.stderr_tail, 4) or '(empty)'}")

    def _fail(self, status: str, message: str):
        self.close()
        raise SandboxError(status, message)


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


def is_finite_number(value: Any) -> bool:
    """True for a real int or float that is finite (bool excluded): what a trusted side accepts as a number."""
    return type(value) in (int, float) and math.isfinite(value)
