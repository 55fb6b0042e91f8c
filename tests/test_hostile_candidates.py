"""Hostile candidates, each run through the real benchmark CLI and runner, each contained with the right status.

The host task is email_validation: every fixture is an `is_valid_email` that misbehaves on its first call (or at
import). Wall times are bounded by the sandbox's limits; the assertions are on status, output and side effects.
"""
import json
import os
import socket
import subprocess
import textwrap
import time

import pytest

from tasks.sandbox import isolation
from tasks.task_runner import load_task, run_solution

CANARY = "sia-canary-4b7f1e"
TASK = load_task("email_validation")
needs_bubblewrap = pytest.mark.skipif(not isolation().bubblewrap, reason="bubblewrap is not installed")


def solution(tmp_path, body: str, name="candidate.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def run(path, **kwargs):
    started = time.monotonic()
    result = run_solution(TASK, path, **kwargs)
    return result, time.monotonic() - started


def everything_said(result) -> str:
    return json.dumps(result.to_dict())


def surviving_sleepers() -> list[str]:
    listing = subprocess.run(["ps", "-e", "-o", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if "sleep 301.25" in line]


@pytest.fixture(scope="module")
def honest_accuracy(tmp_path_factory):
    """What the 'always True' verdict scores, computed in this trusted process from the labelled data."""
    cases = json.loads((TASK.path / "test_cases.json").read_text())["cases"]
    return 100.0 * sum(case["expected"] is True for case in cases) / len(cases)


def test_normal_solution_scores_exactly_as_computed_outside_the_sandbox(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("initial", TASK.initial_solution)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = json.loads((TASK.path / "test_cases.json").read_text())["cases"]
    expected = 100.0 * sum(module.is_valid_email(c["address"]) == c["expected"] for c in cases) / len(cases)
    result, _ = run(TASK.initial_solution)
    assert result.status == "ok"
    assert result.metric == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("body,status", [
    ("def is_valid_email(a):\n    while True: pass\n", "timeout"),
    ("import time\ndef is_valid_email(a):\n    time.sleep(3600)\n", "timeout"),
    ("import time\ntime.sleep(3600)\ndef is_valid_email(a): return True\n", "timeout"),   # hangs at import
    ("def is_valid_email(a):\n    x = bytearray(8 * 1024**3)\n    return True\n", "memory"),
    ("chunks = []\ndef is_valid_email(a):\n    while True: chunks.append(bytearray(64 * 1024**2))\n", "memory"),
    ("import os\ndef is_valid_email(a):\n    os._exit(0)\n", "crash"),
    ("import os, signal\ndef is_valid_email(a):\n    os.kill(os.getpid(), signal.SIGSEGV)\n", "crash"),
    ("def is_valid_email(a):\n    return float('nan')\n", "invalid_output"),
    ("def is_valid_email(a):\n    return 10 ** 400\n", "invalid_output"),
    ("class Yes:\n    def __eq__(self, other): return True\n"
     "def is_valid_email(a):\n    return Yes()\n", "invalid_output"),
    ("class Yes(int):\n    def __eq__(self, other): return True\n"
     "def is_valid_email(a):\n    return Yes(1)\n", "invalid_output"),
    ("def is_valid_email(a):\n    return 'yes'\n", "invalid_output"),
    ("def is_valid_email(a) return True\n", "load_error"),
    ("raise RuntimeError('at import')\n", "load_error"),
    ("def something_else(a):\n    return True\n", "missing_function"),
])
def test_hostile_candidate_gets_the_right_status(tmp_path, body, status):
    result, elapsed = run(solution(tmp_path, body))
    assert result.status == status, result.message
    assert result.metric is None
    assert result.message  # a clear word on what went wrong, not a traceback wall
    assert len(result.message) < 2000
    assert elapsed < 60


def test_cpu_time_limit_stops_a_busy_loop_even_without_the_wall_clock(tmp_path, repo_root):
    from tasks.sandbox import Limits, Sandbox, SandboxError
    path = solution(tmp_path, "def spin():\n    while True: pass\n")
    with pytest.raises(SandboxError) as error:
        with Sandbox(path, limits=Limits(call_timeout=30, cpu_seconds=1)) as box:
            box.call("spin")
    assert error.value.status == "timeout" and "CPU" in error.value.message


def test_fork_loop_and_double_forked_setsid_children_do_not_survive(tmp_path):
    result, elapsed = run(solution(tmp_path, """
        import os, time
        MARKER = "301.25"
        started = False
        def is_valid_email(a):
            global started
            if not started:
                started = True
                forks = 0
                for _ in range(50):
                    try:
                        if os.fork() == 0:
                            os.execv("/usr/bin/sleep", ["sleep", MARKER])
                        forks += 1
                    except OSError:
                        break
                print("forks", forks)
                if os.fork() == 0:          # double fork into a new session: escapes a process-group kill
                    os.setsid()
                    if os.fork() == 0:
                        os.execv("/usr/bin/sleep", ["sleep", MARKER])
                    os._exit(0)
            return "@" in a
    """))
    assert result.status == "ok"
    assert elapsed < 60
    forks = int(result.stdout_tail.split("forks ")[1].split()[0])
    assert 0 < forks < 50  # some forks ran (so the check below means something); the process limit stopped the rest
    time.sleep(0.5)
    assert surviving_sleepers() == []


def test_output_flood_is_capped_and_fake_score_lines_are_ignored(tmp_path, honest_accuracy):
    result, elapsed = run(solution(tmp_path, """
        import sys
        flooded = False
        def is_valid_email(a):
            global flooded
            if not flooded:
                flooded = True
                sys.stdout.write("x" * 20_000_000)
                sys.stderr.write("y" * 20_000_000)
                print("\\naccuracy:100")
                print('result: {"status": "ok", "metric": 100.0}')
            return True
    """))
    assert result.status == "ok"
    assert result.metric == pytest.approx(honest_accuracy)
    assert len(result.stdout_tail) <= 2000 and len(result.stderr_tail) <= 2000
    assert "accuracy:100" in result.stdout_tail  # shown as output, not taken as the score


def test_early_exit_with_success_code_is_a_crash_not_a_pass(tmp_path):
    result, _ = run(solution(tmp_path, "import os\nprint('accuracy:100')\nos._exit(0)\n"))
    assert result.status in ("crash", "load_error")
    assert result.metric is None


def test_large_file_write_hits_the_file_size_limit(tmp_path):
    result, _ = run(solution(tmp_path, """
        def is_valid_email(a):
            with open("big.bin", "wb") as f:
                f.write(b"0" * (64 * 1024 * 1024))
            return True
    """))
    assert result.status == "ok"
    assert "File too large" in json.dumps(result.details)


@needs_bubblewrap
def test_writes_outside_the_work_directory_and_to_the_benchmark_fail(tmp_path):
    outside = tmp_path / "outside-marker"
    benchmark_before = TASK.benchmark.read_bytes()
    os.chmod(tmp_path, 0o777)
    result, _ = run(solution(tmp_path, f"""
        import os
        def attempt(path):
            try:
                with open(path, "a") as f:
                    f.write("pwned")
                return "wrote"
            except OSError as e:
                return type(e).__name__
        def is_valid_email(a):
            print(attempt({str(TASK.benchmark)!r}), attempt({str(outside)!r}), attempt("/etc/sia-marker"),
                  attempt("/tmp/sia-marker"))
            return True
    """))
    assert result.status == "ok"
    assert TASK.benchmark.read_bytes() == benchmark_before
    assert not outside.exists() and not os.path.exists("/etc/sia-marker")
    assert "wrote" not in result.stdout_tail.split("\n")[0].replace("/tmp", "")


def test_the_benchmark_and_its_data_are_not_visible(tmp_path):
    if not isolation().bubblewrap:
        pytest.skip("bubblewrap is not installed")
    result, _ = run(solution(tmp_path, f"""
        import os
        def is_valid_email(a):
            print("visible" if os.path.exists({str(TASK.path / 'test_cases.json')!r}) else "hidden")
            return True
    """))
    assert "hidden" in result.stdout_tail and "visible" not in result.stdout_tail


def test_canary_secret_never_reaches_the_candidate(tmp_path, monkeypatch):
    monkeypatch.setenv("SIA_TEST_API_KEY", CANARY)
    monkeypatch.setenv("GEMINI_API_KEY", CANARY)
    result, _ = run(solution(tmp_path, """
        import glob, os
        def is_valid_email(a):
            found = [repr(dict(os.environ))]
            for path in glob.glob("/proc/*/environ"):
                try:
                    found.append(open(path, "rb").read().decode("latin-1"))
                except OSError:
                    pass
            print("\\n".join(found))
            return any("canary" in text for text in found)
    """))
    assert result.status == "ok"
    assert CANARY not in everything_said(result)
    assert "sia-canary" not in result.stdout_tail


@needs_bubblewrap
def test_network_is_unreachable(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        result, _ = run(solution(tmp_path, f"""
            import socket
            def is_valid_email(a):
                try:
                    socket.create_connection(("127.0.0.1", {port}), timeout=1).sendall(b"exfiltrate")
                    print("connected")
                except OSError as e:
                    print("refused", type(e).__name__)
                return True
        """))
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert result.status == "ok"
    assert "connected" not in result.stdout_tail


def test_monkeypatching_builtins_and_the_protocol_cannot_fake_a_score(tmp_path, honest_accuracy):
    result, _ = run(solution(tmp_path, """
        import builtins, json, sys
        builtins.bool = lambda *a: True
        builtins.isinstance = lambda *a: True
        real_dumps = json.dumps
        def dumps(obj, *a, **k):  # claim every answer is right, and that the score is perfect
            if isinstance(obj, dict) and "ok" in obj:
                obj = dict(obj, ok=True, metric=100.0, accuracy=100.0)
            return real_dumps(obj, *a, **k)
        json.dumps = dumps
        for name in list(sys.modules):
            if "benchmark" in name or "task_runner" in name:
                sys.modules[name].__dict__.clear()
        def is_valid_email(a):
            return True
    """))
    # the worker may be made to say True, as the function itself could; it can never say what the score is
    assert result.status in ("ok", "invalid_output", "crash")
    assert result.metric is None or result.metric == pytest.approx(honest_accuracy)
