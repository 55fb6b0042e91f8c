"""Sandbox costs, measured in one run so the ratios are comparable on a noisy shared machine.

    python benchmarks/sandbox_overhead.py [--repeats 10] [--calls 5000]

1. a benchmark run through the sandbox (start worker, import, one call, close) against a bare subprocess
   that imports the same module and makes the same call;
2. the per-call cost of the JSON-over-pipe proxy, against a direct in-process call;
3. the snake benchmark's wall time for the initial solution (through run_solution, as the levels use it).
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.sandbox import Sandbox, isolation  # noqa: E402
from tasks.task_runner import load_task, run_solution  # noqa: E402

MODULE = "def f(x):\n    return x + 1\n"


def median_time(action, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    module = folder / "solution.py"
    module.write_text(MODULE)

    def sandboxed():
        with Sandbox(module) as box:
            box.call("f", 1)

    def bare():
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(folder)!r}); "
                        "import solution; solution.f(1)"], check=True)

    sandbox_s, bare_s = median_time(sandboxed, args.repeats), median_time(bare, args.repeats)
    with Sandbox(module) as box:
        started = time.perf_counter()
        for i in range(args.calls):
            box.call("f", i)
        proxied = (time.perf_counter() - started) / args.calls
    namespace = {}
    exec(MODULE, namespace)
    started = time.perf_counter()
    for i in range(args.calls):
        namespace["f"](i)
    direct = (time.perf_counter() - started) / args.calls
    snake = load_task("snake")
    snake_runs = [run_solution(snake, snake.initial_solution) for _ in range(max(3, args.repeats // 3))]
    snake_s = statistics.median(r.duration_s for r in snake_runs)

    print(f"isolation: {isolation()}")
    print(f"start+import+1 call+close, sandbox : {sandbox_s * 1000:8.1f} ms (median of {args.repeats})")
    print(f"same work, bare subprocess         : {bare_s * 1000:8.1f} ms")
    print(f"sandbox overhead per benchmark run : {(sandbox_s - bare_s) * 1000:8.1f} ms ({sandbox_s / bare_s:.2f}x)")
    print(f"per call through the proxy         : {proxied * 1e6:8.1f} us (direct call {direct * 1e6:.2f} us)")
    print(f"snake benchmark, initial solution  : {snake_s:8.2f} s wall via run_solution "
          f"(metric {snake_runs[0].metric:g}, {snake_runs[0].status})")


if __name__ == "__main__":
    main()
