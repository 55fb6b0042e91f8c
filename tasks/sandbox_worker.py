"""The contained side of the sandbox: hosts one untrusted module and answers calls over two pipes.

Trusted code, but it shares its process with the candidate, which can patch anything here. So nothing this
process says is believed by the parent beyond "here is some JSON": the parent re-parses strictly, checks
the request id and checks types. Limits and the privilege drop happen before the candidate is imported.

Started as:  python -s -P sandbox_worker.py REQUEST_FD RESPONSE_FD LIMITS_JSON
"""
import json
import os
import resource
import sys

UNPRIVILEGED_UID = 65534  # "nobody": cannot read root's files, and the process-count limit applies to it


def apply_limits(limits):
    def cap(kind, soft, hard=None):
        resource.setrlimit(kind, (soft, soft if hard is None else hard))

    cap(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 1)
    cap(resource.RLIMIT_AS, limits["memory_mb"] * 1024 * 1024)
    cap(resource.RLIMIT_FSIZE, limits["file_size_mb"] * 1024 * 1024)
    cap(resource.RLIMIT_NOFILE, limits["open_files"])
    cap(resource.RLIMIT_CORE, 0)
    if limits.get("drop_privileges") and os.getuid() == 0:
        cap(resource.RLIMIT_NPROC, limits["processes"])
        os.setgroups([])
        os.setgid(UNPRIVILEGED_UID)
        os.setuid(UNPRIVILEGED_UID)   # clears every capability, too
    elif os.getuid() != 0:
        cap(resource.RLIMIT_NPROC, limits["processes"])
    try:  # PR_SET_NO_NEW_PRIVS: no setuid binary can hand privileges back
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)
    except Exception:
        pass


class Channel:
    def __init__(self, request_fd, response_fd):
        self.reader = os.fdopen(request_fd, "rb", buffering=0)
        self.writer = os.fdopen(response_fd, "wb", buffering=0)
        self._buffer = b""

    def receive(self):
        while b"\n" not in self._buffer:
            chunk = self.reader.read(65536)
            if not chunk:
                sys.exit(0)  # the parent closed the pipe: we are done
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def send(self, message):
        self.writer.write(json.dumps(message, allow_nan=False).encode() + b"\n")


def install_host_module(channel):
    """`import sandbox_host; sandbox_host.call("llm", ...)` reaches the host functions of the trusted parent."""
    import types

    module = types.ModuleType("sandbox_host")

    class HostError(Exception):
        pass

    def call(name, *args):
        channel.send({"host": name, "args": list(args)})
        reply = channel.receive()
        if "host_error" in reply:
            raise HostError(reply["host_error"])
        return reply.get("host_result")

    module.call = call
    module.HostError = HostError
    sys.modules["sandbox_host"] = module


def describe(exc):
    import traceback
    tail = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": "".join(tail)[-3000:]}


def load(path, workdir):
    import importlib.util
    sys.path.insert(0, workdir)
    spec = importlib.util.spec_from_file_location("solution", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["solution"] = module
    spec.loader.exec_module(module)
    return module


def signature_of(module, name):
    import inspect
    function = getattr(module, name, None)
    if not callable(function):
        return None
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return None


def serve(channel, module):
    while True:
        request = channel.receive()
        request_id, op = request.get("id"), request.get("op")
        try:
            if op == "call":
                function = getattr(module, request["fn"], None)
                if not callable(function):
                    channel.send({"id": request_id, "missing": request["fn"]})
                    continue
                value = function(*request["args"])
            elif op == "signature":
                value = signature_of(module, request["fn"])
            else:
                value = None
        except MemoryError:
            channel.send({"id": request_id, "memory": "MemoryError"})
            continue
        except BaseException as exc:  # SystemExit and KeyboardInterrupt from the candidate are its errors too
            channel.send({"id": request_id, "exception": describe(exc)})
            continue
        try:
            channel.send({"id": request_id, "ok": value})
        except (TypeError, ValueError) as exc:
            channel.send({"id": request_id, "invalid_output": f"return value is not plain JSON data: {exc}"[:500]})


def main():
    request_fd, response_fd, limits = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    apply_limits(limits)
    channel = Channel(request_fd, response_fd)
    install_host_module(channel)
    request = channel.receive()
    try:
        module = load(request["path"], request["workdir"])
    except MemoryError:
        channel.send({"id": request["id"], "memory": "MemoryError while importing"})
        return
    except BaseException as exc:
        channel.send({"id": request["id"], "load_error": describe(exc)})
        return
    channel.send({"id": request["id"], "ok": True})
    serve(channel, module)


if __name__ == "__main__":
    main()
