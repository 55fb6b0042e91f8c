"""Level 1, AutoResearch loop: `python autoresearch/run.py --task snake --iters 10` (see --help)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.harness import main, sibling  # noqa: E402

AutoResearchLoop = sibling(__file__, "loop").AutoResearchLoop

if __name__ == "__main__":
    sys.exit(main(AutoResearchLoop(), "Level 1, the AutoResearch loop: an LLM proposes a change, the benchmark "
                                      "scores it, it is kept if better and reverted otherwise."))
