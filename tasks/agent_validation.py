"""Three-stage validation of agent code an LLM rewrote (levels 3 and 4), before it is ever used.

1. compile: every file parses;
2. import: the files import in a fresh sandboxed interpreter within a time limit (import-time side effects,
   hangs and crashes happen there, never in this process);
3. signature: the required functions exist with the required parameters, in order.
A failure names the stage and the reason, short enough to show the meta-agent next time.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tasks.sandbox import Limits, Sandbox, SandboxError

IMPORT_LIMITS = Limits(load_timeout=10.0, call_timeout=5.0, total_timeout=20.0, cpu_seconds=10)
MAX_SOURCE_CHARS = 60_000


@dataclass
class Verdict:
    ok: bool
    stage: str = ""        # "compile", "import" or "signature" when not ok
    reason: str = ""

    def to_dict(self) -> dict:
        return {"ok": self.ok, "stage": self.stage, "reason": self.reason}


def validate_agent(sources: dict[str, str], required: dict[str, dict[str, list[str]]]) -> Verdict:
    """`sources`: file name -> code; `required`: file name -> {function: [parameter names]}."""
    for name, code in sources.items():
        if not isinstance(code, str) or len(code) > MAX_SOURCE_CHARS:
            return Verdict(False, "compile", f"{name}: not text, or longer than {MAX_SOURCE_CHARS} characters")
        try:
            compile(code, name, "exec")
        except (SyntaxError, ValueError) as error:
            line = getattr(error, "lineno", None)
            return Verdict(False, "compile", f"{name}: {type(error).__name__} at line {line}: {error}")
    with tempfile.TemporaryDirectory(prefix="sia-validate-") as folder:
        paths = {}
        for name, code in sources.items():
            paths[name] = Path(folder) / os.path.basename(name)
            paths[name].write_text(code, encoding="utf-8")
        for name, functions in required.items():
            if name not in paths:
                return Verdict(False, "import", f"{name} is missing")
            others = {other: path for other, path in paths.items() if other != name}
            try:
                with Sandbox(paths[name], limits=IMPORT_LIMITS, extra_files=others) as box:
                    for function, parameters in functions.items():
                        found = box.signature(function)
                        if found is None:
                            return Verdict(False, "signature", f"{name}: function `{function}` is missing")
                        if found[:len(parameters)] != parameters:
                            return Verdict(False, "signature",
                                           f"{name}: `{function}({', '.join(found)})` must take "
                                           f"({', '.join(parameters)})")
            except SandboxError as error:
                return Verdict(False, "import", f"{name}: {error.status}: {error.message[:400]}")
    return Verdict(True)
