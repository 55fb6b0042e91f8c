"""Checkpoints: atomic writes, fallback on corruption, the run lock, and resume after SIGKILL at awkward points."""
import json
import subprocess
import sys
import textwrap

import pytest

from tasks.checkpoint import CheckpointError, RunDirectory, RunLockedError

ITERATIONS = 6

# A tiny loop in the shape every level has: state in, one iteration, checkpoint. The crash hook is installed
# from outside (it patches os.replace), so the checkpoint code under test is the real, unmodified one.
LOOP = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from tasks import checkpoint
    run_dir, crash_point, crash_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    real_replace = os.replace
    saves = 0
    def replace(source, target):
        global saves
        if str(target).endswith(".json"):
            saves += 1
            if crash_point == "after_temp_write" and saves == crash_at:
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(source, target)
            if crash_point == "after_replace" and saves == crash_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return
        real_replace(source, target)
    os.replace = replace
    with checkpoint.RunDirectory(run_dir) as run:
        state = run.load() or {{"next_iteration": 0, "results": []}}
        while state["next_iteration"] < {iterations}:
            i = state["next_iteration"]
            if crash_point == "mid_iteration" and i == crash_at and not os.path.exists(run_dir + "/crashed"):
                open(run_dir + "/crashed", "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            state["results"].append(i * i)
            state["next_iteration"] = i + 1
            run.save(state)
    print("finished", state["results"])
""")


@pytest.mark.parametrize("crash_point,crash_at", [
    ("after_temp_write", 1), ("after_temp_write", 4), ("after_replace", 1), ("after_replace", 3),
    ("mid_iteration", 2), ("mid_iteration", 5)])
def test_sigkill_then_resume_loses_and_repeats_nothing(tmp_path, repo_root, crash_point, crash_at):
    script = tmp_path / "loop.py"
    script.write_text(LOOP.format(root=str(repo_root), iterations=ITERATIONS))
    run_dir = tmp_path / "run"
    first = subprocess.run([sys.executable, str(script), str(run_dir), crash_point, str(crash_at)],
                           capture_output=True, text=True, timeout=60)
    assert first.returncode == -9, first.stderr
    second = subprocess.run([sys.executable, str(script), str(run_dir), "none", "0"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    with RunDirectory(run_dir) as run:
        state = run.load()
    assert state["results"] == [i * i for i in range(ITERATIONS)]
    assert "fallback" not in second.stderr  # a killed writer never leaves a torn checkpoint behind
    assert len(list(run_dir.glob("checkpoint-*.json"))) <= 3


def test_corrupt_newest_falls_back_to_previous_loudly(tmp_path, capsys):
    with RunDirectory(tmp_path) as run:
        for i in range(3):
            run.save({"next_iteration": i})
        newest = sorted(tmp_path.glob("checkpoint-*.json"))[-1]
        newest.write_text(newest.read_text()[:40])  # truncated
        assert run.load() == {"next_iteration": 1}
    assert "checkpoint fallback" in capsys.readouterr().err


def test_checksum_mismatch_is_detected(tmp_path):
    with RunDirectory(tmp_path) as run:
        run.save({"value": 1})
        run.save({"value": 2})
        newest = sorted(tmp_path.glob("checkpoint-*.json"))[-1]
        document = json.loads(newest.read_text())
        document["state"]["value"] = 99
        newest.write_text(json.dumps(document))
        assert run.load() == {"value": 1}


def test_all_corrupt_refuses_instead_of_starting_over(tmp_path):
    with RunDirectory(tmp_path) as run:
        run.save({"value": 1})
        for path in tmp_path.glob("checkpoint-*.json"):
            path.write_text("{not json")
        with pytest.raises(CheckpointError, match="--fresh"):
            run.load()


def test_no_checkpoint_means_fresh_start(tmp_path):
    with RunDirectory(tmp_path / "new") as run:
        assert run.load() is None


def test_keeps_only_last_three(tmp_path):
    with RunDirectory(tmp_path) as run:
        for i in range(7):
            run.save({"i": i})
        assert [p.name for p in sorted(tmp_path.glob("checkpoint-*.json"))] == [
            "checkpoint-000005.json", "checkpoint-000006.json", "checkpoint-000007.json"]
        assert run.load() == {"i": 6}


def test_lock_refuses_a_second_process(tmp_path, repo_root):
    holder = subprocess.Popen([sys.executable, "-c", (
        f"import sys, time; sys.path.insert(0, {str(repo_root)!r}); from tasks.checkpoint import RunDirectory\n"
        f"with RunDirectory({str(tmp_path)!r}):\n    print('locked', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match="in use by process"):
            RunDirectory(tmp_path).lock()
    finally:
        holder.kill()
        holder.wait()
    with RunDirectory(tmp_path):  # released when the holder dies
        pass


def test_save_without_lock_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="lock"):
        RunDirectory(tmp_path).save({"x": 1})
