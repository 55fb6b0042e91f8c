"""Level 1 experiment: the run of run.py with full logging, repeated over --seeds N into separate records."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.harness import main, sibling  # noqa: E402

AutoResearchLoop = sibling(__file__, "loop").AutoResearchLoop

if __name__ == "__main__":
    sys.exit(main(AutoResearchLoop(), "Level 1 experiment (AutoResearch loop) over one or more seeds.",
                  experiment=True))
