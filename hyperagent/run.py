"""Level 3, the HyperAgent loop: `python hyperagent/run.py --task snake --iters 12 --meta-every 3` (see --help)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.harness import main, sibling  # noqa: E402

loop = sibling(__file__, "loop")

if __name__ == "__main__":
    sys.exit(main(loop.HyperAgentLoop(), "Level 3, the HyperAgent loop: a sandboxed task agent improves the task's "
                                         "code; every K iterations a sandboxed meta-agent rewrites both agents.",
                  add_arguments=loop.add_level_arguments))
