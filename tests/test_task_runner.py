"""load_task's checks, a task added from a folder anywhere, and the sandbox without bubblewrap."""
import shutil
import textwrap

import pytest

from tasks import sandbox
from tasks.task_runner import TaskError, load_task, run_solution

USER_TASK = {
    "config.py": '''
        TASK_NAME = "double"
        METRIC_NAME = "correct"
        HIGHER_IS_BETTER = True
        PERFECT_SCORE = 3
        REQUIRED_FUNCTIONS = {"double": ["x"]}
        PROMPT_TEMPLATE = "Write double(x). Score {metric}.\\n{code}"
        def build_prompt(code, metric):
            return PROMPT_TEMPLATE.replace("{metric}", str(metric)).replace("{code}", code)
    ''',
    "initial_solution.py": "def double(x):\n    return x + 1\n",
    "benchmark.py": '''
        import sys
        sys.path.insert(0, ROOT)  # a real user's task would find the framework installed or on PYTHONPATH
        from tasks.benchmark_cli import main
        from tasks.sandbox import Sandbox, SandboxError
        from tasks.sandbox import is_finite_number
        def evaluate(solution, args):
            with Sandbox(solution) as box:
                box.require("double")
                answers = [box.call("double", x) for x in (0, 1, 5)]
            if not all(is_finite_number(a) for a in answers):
                raise SandboxError("invalid_output", "double must return a number")
            return {"metric": sum(a == 2 * x for a, x in zip(answers, (0, 1, 5))), "details": {"answers": answers}}
        if __name__ == "__main__":
            main(evaluate, "correct")
    ''',
}


def make_task(folder, root="", **replace):
    folder.mkdir()
    for name, text in {**USER_TASK, **replace}.items():
        if text is not None:
            (folder / name).write_text(textwrap.dedent(text).replace("ROOT)", f"{str(root)!r})"))
    return folder


def test_a_task_folder_anywhere_loads_and_scores(tmp_path, repo_root):
    task = load_task(make_task(tmp_path / "double", root=repo_root))
    assert (task.name, task.metric_name, task.perfect_score) == ("double", "correct", 3)
    assert run_solution(task, task.initial_solution).metric == 1   # x + 1 doubles only 1
    good = tmp_path / "good.py"
    good.write_text("def double(x):\n    return 2 * x\n")
    result = run_solution(task, good)
    assert result.ok and result.metric == 3 and task.is_perfect(result.metric)


@pytest.mark.parametrize("change,message", [
    ({"benchmark.py": None}, "missing benchmark.py"),
    ({"config.py": "TASK_NAME = 'x'\n"}, "METRIC_NAME must be a str"),
    ({"config.py": USER_TASK["config.py"].replace("def build_prompt(code, metric):", "def build_prompt(code):")},
     "build_prompt(code, metric) must be a function of two arguments"),
    ({"config.py": USER_TASK["config.py"].replace('{"double": ["x"]}', '["double"]')}, "REQUIRED_FUNCTIONS must be a dict"),
    ({"config.py": "raise ImportError('boom')\n"}, "config.py failed to import: ImportError: boom"),
    ({"config.py": USER_TASK["config.py"] + "\n        USES_RUBRIC = True\n"}, "must define score_answers"),
])
def test_load_task_says_exactly_what_is_wrong(tmp_path, change, message):
    folder = make_task(tmp_path / "broken", **change)
    with pytest.raises(TaskError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_task(folder)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(TaskError, match="Known tasks: .*email_validation.*snake.*support"):
        load_task("chess")


def test_without_bubblewrap_the_other_layers_still_hold_and_it_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "_isolation", None)
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "bwrap" else shutil.which(name))
    monkeypatch.setenv("SIA_TEST_SECRET", "canary-no-bwrap-81f2")
    protections = sandbox.isolation()
    assert not protections.bubblewrap
    assert "no bubblewrap" in capsys.readouterr().err  # said once, plainly
    path = tmp_path / "candidate.py"
    path.write_text("import os, time\ndef peek():\n    return dict(os.environ)\ndef hang():\n    time.sleep(60)\n")
    with sandbox.Sandbox(path, limits=sandbox.Limits(call_timeout=1)) as box:
        environment = box.call("peek")
        assert "SIA_TEST_SECRET" not in environment and set(environment) <= {*sandbox.ENVIRONMENT, "HOME", "PWD"}
        with pytest.raises(sandbox.SandboxError) as error:
            box.call("hang")
    assert error.value.status == "timeout"
    monkeypatch.setattr(sandbox, "_isolation", None)  # the next test sees the real machine again


def test_set_order_and_so_scores_are_the_same_in_every_worker(tmp_path):
    # With hash randomization, iterating a set of strings gives a different order in each new process; a
    # solution that (unwisely) depends on it would score differently from run to run. The worker fixes the seed.
    path = tmp_path / "candidate.py"
    path.write_text("def order():\n    return list({'UP', 'DOWN', 'LEFT', 'RIGHT', 'apple', 'pear', 'plum', 'fig'})\n")
    orders = set()
    for _ in range(4):
        with sandbox.Sandbox(path) as box:
            orders.add(tuple(box.call("order")))
    assert len(orders) == 1
