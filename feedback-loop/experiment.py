"""Level 2 experiment: the run of run.py with full logging, repeated over --seeds N into separate records."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.harness import main, sibling  # noqa: E402

FeedbackLoop = sibling(__file__, "loop").FeedbackLoop

if __name__ == "__main__":
    sys.exit(main(FeedbackLoop(), "Level 2 experiment (Feedback loop) over one or more seeds.",
                  experiment=True))
