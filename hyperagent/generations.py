"""Generations of the agent code: rewrite checking, validation, parent selection, and the folders on disk.

A generation is one outer step: what the meta-agent returned, checked and (if valid) made live. The level state
(JSON, checkpointed) holds every generation in full, sources included; the folders under the run directory are a
view of it, rewritten idempotently, so a resumed run never duplicates or skips one:

    agent_code/task_agent.py, meta_agent.py      the live copies (the current generation's files)
    generations/gen_000/                          the seed; gen_001, ... one per rewrite, valid or not
        task_agent.py, meta_agent.py              the generation's files (absent when refused or failed)
        meta.json                                 parent, why, validation, inner-loop results, selection
        diff.patch                                the diff from its parent
    lineage.json                                  every generation's metadata in one list
"""
from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

from tasks.agent_validation import validate_agent
from tasks.checkpoint import atomic_write_text
from tasks.code_edits import CandidateRejected, apply_edits, extract_code, has_edit_blocks, parse_edit_blocks
from tasks.task_runner import Task

SEED_DIR = Path(__file__).resolve().parent / "seed"
AGENT_FILES = ("task_agent.py", "meta_agent.py")   # the only names a rewrite may touch
REQUIRED = {"task_agent.py": {"propose": ["context"]}, "meta_agent.py": {"rewrite": ["context"]}}
USABLE = ("seed", "valid")                          # statuses whose code may run
REASON_CHARS = 500


class RewriteProblem(Exception):
    """Why a rewrite is not used: `status` (refused, failed, invalid, unchanged) and `stage`."""

    def __init__(self, status: str, stage: str, reason: str, refused: list[str] | None = None,
                 sources: dict | None = None):
        super().__init__(reason)
        self.status, self.stage, self.reason, self.refused = status, stage, reason[:REASON_CHARS], refused or []
        self.sources = sources or {}   # an invalid rewrite's code, kept in its folder to be looked at


# ----- the seed -----------------------------------------------------------------------------------
def seed_generation() -> dict:
    sources = {name: (SEED_DIR / name).read_text(encoding="utf-8") for name in AGENT_FILES}
    return new_generation(0, None, 0, "seed", "the original agent code (hyperagent/seed/)", sources, {}, "",
                          "the seed has no parent")


def new_generation(number: int, parent: int | None, iteration: int, status: str, reason: str, sources: dict,
                   parent_sources: dict, validation_reason: str, selected_because: str, stage: str = "",
                   refused: list[str] | None = None) -> dict:
    return {"generation": number, "parent": parent, "created_before_iteration": iteration, "status": status,
            "reason": reason[:REASON_CHARS], "selected_because": selected_because,
            "validation": {"ok": status in USABLE, "stage": stage, "reason": validation_reason},
            "refused_files": refused or [], "sources": sources, "diff": diff_of(parent_sources, sources),
            "inner_results": [], "score": None,
            "versus_parent": "not evaluated yet" if status in USABLE else "never run"}


def diff_of(old: dict, new: dict) -> str:
    if not old or not new:
        return ""
    parts = []
    for name in AGENT_FILES:
        parts += difflib.unified_diff(old[name].splitlines(True), new[name].splitlines(True),
                                      f"parent/{name}", f"this/{name}")
    return "".join(parts)


# ----- checking a rewrite -------------------------------------------------------------------------
def apply_rewrite(output, parent_sources: dict) -> dict:
    """The new sources a meta-agent's output stands for, validated; or RewriteProblem. Writes nothing."""
    if not isinstance(output, dict):
        raise RewriteProblem("failed", "output", f"rewrite() must return a dict, got {type(output).__name__}")
    files, edits = output.get("files") or {}, output.get("edits") or {}
    if not isinstance(files, dict) or not isinstance(edits, dict):
        raise RewriteProblem("failed", "output", '"files" and "edits" must map file names to text')
    outside = sorted({name for name in [*files, *edits] if name not in AGENT_FILES}, key=str)
    if outside:
        shown = ", ".join(repr(name)[:120] for name in outside)
        raise RewriteProblem("refused", "paths", f"refused: the rewrite named {shown}; a rewrite may only change "
                             f"{' and '.join(AGENT_FILES)} (plain names, nothing else); nothing was written",
                             refused=[str(name)[:300] for name in outside])
    if set(files) & set(edits):
        raise RewriteProblem("failed", "output", "a file was given both whole and as edits")
    if not all(isinstance(text, str) for text in [*files.values(), *edits.values()]):
        raise RewriteProblem("failed", "output", "every file and edit must be text")
    sources = dict(parent_sources, **files)
    for name, reply in edits.items():
        try:
            sources[name] = _apply_reply(reply, parent_sources[name], list(REQUIRED[name]))
        except CandidateRejected as rejected:
            raise RewriteProblem("invalid", "edit", f"{name}: {rejected.kind}: {rejected.message}") from None
    if sources == parent_sources:
        raise RewriteProblem("unchanged", "unchanged", "the rewrite changed nothing")
    verdict = validate_agent(sources, REQUIRED)
    if not verdict.ok:
        raise RewriteProblem("invalid", verdict.stage, verdict.reason, sources=sources)
    return sources


def _apply_reply(reply: str, source: str, required_names: list[str]) -> str:
    """SEARCH/REPLACE blocks applied to `source`, or a whole file in a fenced block (tasks/code_edits.py)."""
    if has_edit_blocks(reply):
        return apply_edits(source, parse_edit_blocks(reply))
    return extract_code(reply, required_names)


# ----- scores and parent selection ----------------------------------------------------------------
def record_inner_result(generation: dict, entry: dict, generations: list[dict], task: Task) -> None:
    """One inner iteration of this generation; its score is the best metric any of its candidates reached."""
    generation["inner_results"].append(entry)
    if entry["metric"] is not None and entry["status"] == "ok" and \
            (generation["score"] is None or not task.is_better(generation["score"], entry["metric"])):
        generation["score"] = entry["metric"]
    generation["versus_parent"] = versus_parent(generation, generations, task)


def versus_parent(generation: dict, generations: list[dict], task: Task) -> str:
    if not generation["inner_results"]:
        return "not evaluated yet"
    if generation["parent"] is None:
        return "root"
    mine, theirs = generation["score"], generations[generation["parent"]]["score"]
    if task.is_better(theirs, mine):
        return "worse"
    return "better" if task.is_better(mine, theirs) else "equal"


def select_parent(generations: list[dict], task: Task) -> tuple[int, dict]:
    """The parent of the next rewrite: among usable generations whose inner loop has run and did not do worse
    than their parent's, the one with the best score (the best metric its candidates reached; no score ranks
    last), ties to the newer. Returns the number and a record of why."""
    scores, excluded, best = {}, {}, None
    for generation in generations:
        name = f"gen_{generation['generation']:03d}"
        if generation["status"] not in USABLE:
            continue
        generation["versus_parent"] = versus_parent(generation, generations, task)
        if generation["versus_parent"] == "not evaluated yet":
            excluded[name] = "its inner loop has not run yet"
            continue
        scores[name] = generation["score"]
        if generation["versus_parent"] == "worse":
            excluded[name] = f"its inner loop did worse than its parent gen_{generation['parent']:03d}'s"
            continue
        if best is None or not task.is_better(best["score"], generation["score"]):
            best = generation
    if best is None:  # nothing evaluated yet: the newest usable generation
        best = [g for g in generations if g["status"] in USABLE][-1]
    metric = "no score" if best["score"] is None else f"{task.metric_name} {best['score']:g}"
    because = (f"gen_{best['generation']:03d} has the best score among usable generations ({metric}, the best "
               f"metric its candidates reached; ties go to the newer)")
    if excluded:
        because += "; passed over: " + "; ".join(f"{name}: {why}" for name, why in excluded.items())
    return best["generation"], {"because": because, "scores": scores, "excluded": excluded}


# ----- the folders: a view of the state, written idempotently ----------------------------------------
def metadata(generation: dict) -> dict:
    shown = {key: value for key, value in generation.items() if key not in ("sources", "diff")}
    shown["name"] = folder_name(generation["generation"])
    shown["files"] = sorted(generation["sources"])
    return shown


def folder_name(number: int) -> str:
    return f"gen_{number:03d}"


def sync_folders(directory: Path, generations: list[dict], current: int) -> None:
    """Make agent_code/, generations/ and lineage.json match the state; only what differs is written."""
    root = directory / "generations"
    root.mkdir(parents=True, exist_ok=True)
    for generation in generations:
        folder = root / folder_name(generation["generation"])
        folder.mkdir(exist_ok=True)
        wanted = dict(generation["sources"])
        wanted["meta.json"] = json.dumps(metadata(generation), indent=1) + "\n"
        wanted["diff.patch"] = generation["diff"]
        _write_files(folder, wanted)
    known = {folder_name(g["generation"]) for g in generations}
    for stale in root.iterdir():  # left by a run that crashed after writing it and before its checkpoint
        if stale.name not in known:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    _write_files(directory / "agent_code", generations[current]["sources"])
    lineage = [metadata(g) for g in generations]
    _write_files(directory, {"lineage.json": json.dumps(lineage, indent=1) + "\n"}, remove_others=False)


def _write_files(folder: Path, wanted: dict[str, str], remove_others: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in wanted.items():
        path = folder / name
        if path.is_symlink() or path.is_dir():
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text, durable=False)  # derived from the checkpoint, rewritten on resume
    if remove_others:
        for entry in folder.iterdir():
            if entry.name not in wanted:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
