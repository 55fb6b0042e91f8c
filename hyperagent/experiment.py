"""Level 3 experiment: the run of run.py with full logging, repeated over --seeds N into separate records."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.harness import main, sibling  # noqa: E402

loop = sibling(__file__, "loop")

if __name__ == "__main__":
    sys.exit(main(loop.HyperAgentLoop(), "Level 3 experiment (HyperAgent loop) over one or more seeds.",
                  experiment=True, add_arguments=loop.add_level_arguments))
