"""Draft a rubric task's weighted fact checks with an LLM, for a person to review.

    python tasks/generate_rubric.py --task support [--provider P --model M] [--out PATH] [--questions q1,q4]

Reads the task's questions (config.QUESTIONS) and knowledge base (config.load_kb()), asks the LLM (role
"rubric_writer") for checks per question, validates each check with the rubric engine (schema, safe regex,
credit keywords grounded in the KB), drops the invalid ones (asking once more, with the reasons, when a
question is left without a credit check), and writes {"questions": {id: {"checks": [...]}}, "generated": ...}.
The default output is <task>/rubric_checks.generated.json, so the reviewed config.RUBRIC_CHECKS is never
overwritten by accident; pass --out to that file to replace it (refused unless every question got checks).
Exit status: 0 every question has checks, 1 some have none (file written for review), 2 bad input or LLM error.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.checkpoint import atomic_write_text  # noqa: E402
from tasks.llm import LLMError, make_client  # noqa: E402
from tasks.support import rubric  # noqa: E402
from tasks.task_runner import TaskError, load_task  # noqa: E402

WRITER_ROLE = "rubric_writer"
WRITER_TEMPERATURE = 0.0          # a draft a person reviews: reproducible beats varied
WRITER_MAX_TOKENS = 4096          # eight checks with synonym lists fit comfortably
MAX_CHECKS_PER_QUESTION = 12
ATTEMPTS_PER_QUESTION = 2         # a second ask, with the rejection reasons, when no credit check survives
GENERATED_NAME = "rubric_checks.generated.json"
_PLACEHOLDER = re.compile(r"\{(feedback|knowledge_base|question)\}")
PROMPT_TEMPLATE = (Path(__file__).resolve().parent / "llm" / "rubric_writer_prompt.txt").read_text(encoding="utf-8")

# Loose on purpose: each check is validated on its own afterwards, so one malformed check is dropped
# instead of failing the whole reply.
WRITER_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["checks"],
    "properties": {"checks": {
        "type": "array", "minItems": 1, "maxItems": MAX_CHECKS_PER_QUESTION,
        "items": {"type": "object", "required": ["id", "description", "weight", "matcher"],
                  "properties": {"id": {"type": "string"}, "description": {"type": "string"},
                                 "weight": {"type": "number"},
                                 "matcher": {"type": "object", "required": ["type"],
                                             "properties": {"type": {"enum": ["keywords", "regex", "absent",
                                                                              "all_of", "any_of", "judge"]}}}}},
    }},
}


def render_prompt(question: str, kb: list[dict], feedback: str = "") -> str:
    articles = "\n\n".join(f"[{a.get('id', index)}] {a.get('title', '')}\n{a.get('body', '')}"
                           for index, a in enumerate(kb))
    values = {"question": question, "knowledge_base": articles,
              "feedback": f"\nYOUR PREVIOUS CHECKS WERE REJECTED:\n{feedback}\nFix these problems.\n" if feedback else ""}
    # one pass, so inserted text (a rejected check's id, a question) is never searched for placeholders
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], PROMPT_TEMPLATE)


def keep_valid_checks(question: str, checks: list, kb: list[dict], normalized_kb: str) -> tuple[list[dict], list[str]]:
    """(valid checks with unique ids, one reason per dropped check)."""
    kept, rejected, ids = [], [], set()
    for index, check in enumerate(checks):
        problem = rubric.validate_check(check, kb, normalized_kb=normalized_kb)
        if problem:
            label = check.get("id", f"#{index + 1}") if isinstance(check, dict) else f"#{index + 1}"
            rejected.append(f"{label}: {problem}")
            continue
        base, copy = check["id"], 2
        while check["id"] in ids:   # the model reused an id: keep the check, rename it
            check = {**check, "id": f"{base[:50]}-{copy}"}
            copy += 1
        ids.add(check["id"])
        kept.append(check)
    if kept:
        problem = rubric.validate_case({"question": question, "checks": kept}, kb, normalized_kb=normalized_kb)
        if problem:
            rejected.append(f"question as a whole: {problem}")
            kept = []
    return kept, rejected


def generate_checks(client, question: str, kb: list[dict], normalized_kb: str) -> tuple[list[dict], list[str]]:
    """The valid checks for one question and every rejection reason along the way."""
    all_rejected: list[str] = []
    feedback = ""
    for attempt in range(ATTEMPTS_PER_QUESTION):
        try:
            reply = client.complete(WRITER_ROLE, render_prompt(question, kb, feedback), schema=WRITER_SCHEMA,
                                    max_tokens=WRITER_MAX_TOKENS, temperature=WRITER_TEMPERATURE)
        except LLMError as exc:
            all_rejected.append(f"attempt {attempt + 1}: the LLM call failed: {exc}")
            break   # budgets, exhausted scripts and outages do not get better by asking again
        if reply.truncated or reply.data is None:
            rejected = [f"the reply was cut off at {WRITER_MAX_TOKENS} tokens"]
            kept = []
        else:
            kept, rejected = keep_valid_checks(question, reply.data["checks"], kb, normalized_kb)
        all_rejected += [f"attempt {attempt + 1}: {reason}" for reason in rejected]
        if kept:
            return kept, all_rejected
        feedback = "\n".join(f"- {reason}" for reason in rejected)
    return [], all_rejected


def load_rubric_task(name_or_path: str):
    task = load_task(name_or_path)
    config = task.config
    missing = [name for name in ("QUESTIONS", "RUBRIC_CHECKS", "load_kb") if not hasattr(config, name)]
    if not getattr(config, "USES_RUBRIC", False) or missing:
        raise TaskError(f"task {task.name} is not a rubric task this generator understands: it needs USES_RUBRIC = True, "
                        f"QUESTIONS (a JSON list of {{\"id\", \"question\"}}), RUBRIC_CHECKS and load_kb() in its "
                        f"config.py" + (f"; missing {', '.join(missing)}" if missing else ""))
    return task


def generate_rubric(task, client, only: list[str] | None = None) -> tuple[dict, dict]:
    """({"questions": ...} for the file, {question id: rejection reasons}); `only` limits the question ids."""
    questions = json.loads(Path(task.config.QUESTIONS).read_text(encoding="utf-8"))
    known = [q["id"] for q in questions]
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise TaskError(f"--questions names {unknown}, which task {task.name} does not have; it has {known}")
    kb = task.config.load_kb()
    normalized_kb = rubric.kb_text(kb)
    generated, rejections = {}, {}
    for entry in questions:
        if only and entry["id"] not in only:
            continue
        checks, rejected = generate_checks(client, entry["question"], kb, normalized_kb)
        if checks:
            generated[entry["id"]] = {"checks": checks}
        if rejected:
            rejections[entry["id"]] = rejected
        print(f"  {entry['id']}: {len(checks)} checks kept, {len(rejected)} rejected", file=sys.stderr)
    return {"questions": generated}, rejections


def summary_lines(questions: list[str], rubric_file: dict, rejections: dict) -> list[str]:
    lines = []
    for qid in questions:
        checks = rubric_file["questions"].get(qid, {}).get("checks", [])
        credit = [c for c in checks if not rubric.is_penalty(c)]
        penalty = [c for c in checks if rubric.is_penalty(c)]
        lines.append(f"{qid}: " + (f"{len(credit)} credit (weight {sum(c['weight'] for c in credit):g}), "
                                   f"{len(penalty)} penalty (weight {sum(c['weight'] for c in penalty):g})"
                                   if checks else "NO VALID CHECKS: write them by hand"))
        for check in checks:
            needs_judge = any(m["type"] == "judge" for m, _ in rubric.iter_matchers(check["matcher"]))
            lines.append(f"    {'-' if rubric.is_penalty(check) else '+'}{check['weight']:g} {check['id']}: "
                         f"{check['description']}" + ("  [asks the LLM judge when scoring]" if needs_judge else ""))
        for reason in rejections.get(qid, []):
            lines.append(f"    rejected {reason[:240]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, help="a rubric task under tasks/ (or a path to one), e.g. support")
    parser.add_argument("--provider", default=None, help="gemini, openai, local, scripted:PATH or replay:PATH")
    parser.add_argument("--model", default=None, help="model name for the provider")
    parser.add_argument("--out", default=None, help=f"where to write (default: <task>/{GENERATED_NAME})")
    parser.add_argument("--questions", default=None, help="comma-separated question ids to draft (default: all)")
    parser.add_argument("--record", default=None, help="append every LLM call to this cassette (JSONL)")
    parser.add_argument("--max-calls", type=int, default=None, help="stop after this many LLM calls")
    parser.add_argument("--max-cost", type=float, default=None, help="stop after spending this many USD")
    args = parser.parse_args(argv)
    try:
        task = load_rubric_task(args.task)
        client = make_client(args.provider, args.model, record_to=args.record, max_calls=args.max_calls,
                             max_cost=args.max_cost)
        only = [q.strip() for q in args.questions.split(",") if q.strip()] if args.questions else None
        print(f"drafting rubric checks for task {task.name} with {client.describe()}", file=sys.stderr)
        rubric_file, rejections = generate_rubric(task, client, only)
    except (TaskError, LLMError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    all_ids = [q["id"] for q in json.loads(Path(task.config.QUESTIONS).read_text(encoding="utf-8"))]
    asked = [qid for qid in all_ids if not only or qid in only]
    without = [qid for qid in asked if qid not in rubric_file["questions"]]
    rubric_file["generated"] = {
        "by": client.describe(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": "an LLM draft: review every check before it scores anything", "rejected": rejections}
    out = Path(args.out) if args.out else Path(task.path) / GENERATED_NAME
    live = Path(task.config.RUBRIC_CHECKS).resolve()
    uncovered = [qid for qid in all_ids if qid not in rubric_file["questions"]]
    if out.resolve() == live and uncovered:
        print(f"error: not writing {out}: the task's live rubric needs checks for every question, and "
              f"{uncovered} have none; write to the default {GENERATED_NAME}, fill them in, then copy it",
              file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(rubric_file, indent=1, ensure_ascii=False) + "\n")
    print("\n".join(summary_lines(asked, rubric_file, rejections)))
    usage = client.usage()
    print(f"wrote {out} ({len(rubric_file['questions'])} of {len(asked)} questions; {usage['calls']} LLM calls, "
          f"${usage['cost_usd']:.4f}). Review it" + ("" if out.resolve() == live else
                                                    f", then copy it to {live} or rerun with --out {live}") + ".")
    return 1 if without else 0


if __name__ == "__main__":
    sys.exit(main())
