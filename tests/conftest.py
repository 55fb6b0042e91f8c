import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


def run_benchmark_cli(benchmark: Path, solution: Path, *suites: Path) -> dict:
    """Run a task's real benchmark command line; return its `result:` JSON plus the raw stdout and stderr."""
    command = [sys.executable, str(benchmark), str(solution)]
    for suite in suites:
        command += ["--tests", str(suite)]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    result_lines = [line for line in completed.stdout.splitlines() if line.startswith("result: ")]
    assert result_lines, f"no result line; stdout={completed.stdout!r} stderr={completed.stderr[-2000:]!r}"
    result = json.loads(result_lines[-1][len("result: "):])
    result["stdout"], result["stderr"] = completed.stdout, completed.stderr
    return result
