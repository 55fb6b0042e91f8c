"""Level 4b, the Arena loop: `python arena-loop/run.py --task email_validation` (4 code agents, 4 test agents).

See --help for --code, --test, --replace-every and --label, and CONCEPT.md for how the arena works.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.harness import main, sibling  # noqa: E402

arena = sibling(__file__, "arena")

if __name__ == "__main__":
    sys.exit(main(arena.ArenaLoop(), "Level 4, the Arena loop: code agents try to pass a growing test suite, "
                                     "test agents try to break them, and the suite grows with every case "
                                     "that is right and new.", add_arguments=arena.add_arguments))
