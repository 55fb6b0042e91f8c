"""Level 2, Feedback loop: `python feedback-loop/run.py --task snake --iters 10` (see --help)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.harness import main, sibling  # noqa: E402

FeedbackLoop = sibling(__file__, "loop").FeedbackLoop

if __name__ == "__main__":
    sys.exit(main(FeedbackLoop(), "Level 2, the Feedback loop: a worker proposes a change; after each failure a "
                                      "reviewer with the full history explains why, and the worker acts on it."))
