"""The framework's own overhead per iteration with a zero-latency scripted provider.

    python benchmarks/loop_overhead.py [--iters 20] [--task email_validation]

Runs level 1 end to end (a real run.py process) with a scripted provider whose answers alternate between an
improvement and a regression, then compares the run's wall time with the sum of its benchmark times (both from
the experiment record; the start-up of the process and the baseline evaluation are outside the loop and
excluded). Target: under 5 % overhead.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANSWERS = {
    "email_validation": ["```python\ndef is_valid_email(address):\n    return '@' in address and {n} >= 0\n```",
                         "```python\ndef is_valid_email(address):\n    return address.count('@') == 1 and {n} >= 0\n```"],
    "snake": ["```python\ndef choose_move(state):\n    return 'RIGHT' if {n} >= 0 else 'UP'\n```",
              "```python\ndef choose_move(state):\n    hx, hy = state['snake'][0]\n    fx, fy = state['food']\n"
              "    return ('RIGHT' if fx > hx else 'LEFT' if fx < hx else 'DOWN' if fy > hy else 'UP') if {n} >= 0 else 'UP'\n```"],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--task", default="email_validation", choices=sorted(ANSWERS))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    script = folder / "script.jsonl"
    with script.open("w") as handle:
        for n in range(args.iters):
            handle.write(json.dumps({"role": "researcher", "response": ANSWERS[args.task][n % 2].format(n=n)}) + "\n")
    subprocess.run([sys.executable, str(ROOT / "autoresearch" / "run.py"), "--task", args.task, "--iters",
                    str(args.iters), "--provider", f"scripted:{script}", "--results-dir", str(folder / "results")],
                   check=True, capture_output=True)
    record = json.loads((folder / "results" / args.task / "experiment.json").read_text())
    benchmark = sum(i["benchmark_s"] for i in record["iterations"])
    wall = record["wall_time_s"]
    print(f"task {args.task}, {len(record['iterations'])} iterations, scripted provider (zero latency)")
    print(f"loop wall time        : {wall:7.2f} s")
    print(f"sum of benchmark times: {benchmark:7.2f} s")
    print(f"framework overhead    : {wall - benchmark:7.2f} s = {100 * (wall - benchmark) / wall:.1f} % of the loop "
          f"({1000 * (wall - benchmark) / len(record['iterations']):.0f} ms per iteration)")


if __name__ == "__main__":
    main()
