"""Level 4 experiment: the arena with full logging over --seeds N. 4a, Arena Single (one code agent against
one test agent, no population): `python arena-loop/experiment.py --code 1 --test 1 --label single`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.harness import main, sibling  # noqa: E402

arena = sibling(__file__, "arena")

if __name__ == "__main__":
    sys.exit(main(arena.ArenaLoop(), "Level 4 experiment (Arena loop) over one or more seeds; "
                                     "--code 1 --test 1 --label single is 4a, Arena Single.",
                  experiment=True, add_arguments=arena.add_arguments))
