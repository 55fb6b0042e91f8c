"""Deterministic rubric scoring for judged question-answering tasks (0-100).

A rubric is, per question, a list of weighted checks `{"id", "description", "weight", "matcher"}`.
A matcher looks at the (normalized) answer text and returns True, False, or None when it cannot decide
deterministically. Matcher types (all case-insensitive, all applied to `normalize_text(answer)`):

  {"type": "keywords", "any": [...]}         at least one keyword occurs
  {"type": "keywords", "all": [...]}         every keyword occurs (both lists given: both must hold)
  {"type": "regex", "pattern": "..."}        re.search on the normalized answer
  {"type": "absent", "any"/"all"/"pattern"/"matcher": ...}   True when the wrong fact is NOT there
  {"type": "all_of" | "any_of", "matchers": [...]}           three-valued AND / OR
  {"type": "judge"}                          always None: only a judge can decide (criterion = description)

Keywords are normalized like the answer, and match at word starts; a keyword ending in a digit must not
be followed by more digits ("$12" does not match "$120"). Normalization makes "$12", "12 dollars" and
"USD 12" the same, "14-day" and "14 day" the same, "ten" and "10" the same, and every menu arrow ("->",
"→", ">") the same " > ". Regex authors write patterns against that normalized form.

Scoring, and why dumping the knowledge base scores badly:
  * a check whose top-level matcher is "absent" is a PENALTY check (a wrong or confusable fact for this
    question); every other check is a CREDIT check.
  * question score = 100 * max(0, met credit weight - failed penalty weight) / total credit weight,
    then multiplied by the length factor min(1, max_chars / len(answer)) (max_chars defaults to
    DEFAULT_MAX_CHARS). So an empty answer scores 0, and a long answer that pastes several articles
    both trips penalty checks and loses points in proportion to its length.
  * a check whose matcher says None asks `judge(question, answer, check) -> bool` when a judge is
    given; otherwise (or when the judge fails) it counts as not met and is listed as undecided.
  * the metric is the mean question score; a question "passes" at PASS_SCORE or more.
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Callable

try:  # the regex parser, used only to refuse patterns that could backtrack for ever
    import re._parser as _regex_parser
except ImportError:  # Python < 3.11
    import sre_parse as _regex_parser

DEFAULT_MAX_CHARS = 800        # answers longer than this lose points in proportion to their length
PASS_SCORE = 80.0              # a question counts as passed in details.suites at this score
MAX_DESCRIPTION_IN_DETAILS = 120
ORIGINAL_SUITE = "original"
# Regex guard for case authors (LLM-written rubrics run in the trusted scorer, and Python's re has no
# timeout): no nested repetition, and few variable-length parts, so backtracking stays polynomial and small.
MAX_VARIABLE_REPEATS = 6
MAX_LONG_REPEATS = 2
MAX_BOUNDED_REPEAT = 100
MAX_CASE_DEPTH = 16            # JSON levels: room for matchers nested about five deep

Judge = Callable[[str, str, dict], bool]

# ---------------------------------------------------------------- schema of a case (arena + rubric file)
_KEYWORD_LIST = {"type": "array", "minItems": 1, "maxItems": 30,
                 "items": {"type": "string", "minLength": 1, "maxLength": 200}}
_PATTERN = {"type": "string", "minLength": 1, "maxLength": 300}
CASE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "support question with rubric checks",
    "type": "object",
    "required": ["question", "checks"],
    "properties": {
        "question": {"type": "string", "minLength": 1, "maxLength": 1000},
        "checks": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"$ref": "#/$defs/check"}},
        "max_chars": {"type": "integer", "minimum": 200, "maximum": 2000},
    },
    "$defs": {
        "check": {
            "type": "object", "additionalProperties": False,
            "required": ["id", "description", "weight", "matcher"],
            "properties": {
                "id": {"type": "string", "minLength": 1, "maxLength": 60},
                "description": {"type": "string", "minLength": 1, "maxLength": 300},
                "weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                "matcher": {"$ref": "#/$defs/matcher"},
            },
        },
        "matcher": {"oneOf": [
            {"type": "object", "additionalProperties": False, "required": ["type"],
             "anyOf": [{"required": ["any"]}, {"required": ["all"]}],
             "properties": {"type": {"const": "keywords"}, "any": _KEYWORD_LIST, "all": _KEYWORD_LIST}},
            {"type": "object", "additionalProperties": False, "required": ["type", "pattern"],
             "properties": {"type": {"const": "regex"}, "pattern": _PATTERN}},
            {"type": "object", "additionalProperties": False, "required": ["type"],
             "minProperties": 2, "maxProperties": 2,
             "properties": {"type": {"const": "absent"}, "any": _KEYWORD_LIST, "all": _KEYWORD_LIST,
                            "pattern": _PATTERN, "matcher": {"$ref": "#/$defs/matcher"}}},
            {"type": "object", "additionalProperties": False, "required": ["type", "matchers"],
             "properties": {"type": {"enum": ["all_of", "any_of"]},
                            "matchers": {"type": "array", "minItems": 1, "maxItems": 10,
                                         "items": {"$ref": "#/$defs/matcher"}}}},
            {"type": "object", "additionalProperties": False, "required": ["type"],
             "properties": {"type": {"const": "judge"}}},
        ]},
    },
}

# ---------------------------------------------------------------- normalization
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "ninety": "90"})
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b")
_CHAR_MAP = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2010": "-",
                           "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
                           "\u2192": ">", "\u00bb": ">", "\u203a": ">", "\u279c": ">", "\u00a0": " "})
_AMOUNT = r"(\d+(?:\.\d+)?)"


def normalize_text(text: str) -> str:
    """Lower-case text with money, numbers, dashes, percentages and menu arrows written one way."""
    text = unicodedata.normalize("NFKC", text).translate(_CHAR_MAP).lower()
    text = re.sub(r"-+>|=>", ">", text)
    text = re.sub(r"\s*>\s*", " > ", text)
    text = _NUMBER_WORD_RE.sub(lambda m: _NUMBER_WORDS[m.group(1)], text)
    text = re.sub(r"(\d),(\d{3})\b", r"\1\2", text)
    text = re.sub(r"\b(?:usd|us\$)\s*" + _AMOUNT, r"$\1", text)
    text = re.sub(r"\$\s+(\d)", r"$\1", text)
    text = re.sub(r"(?<![$\d.])" + _AMOUNT + r"\s*(?:us dollars|dollars|usd)\b", r"$\1", text)
    text = re.sub(r"(\d)\.00\b", r"\1", text)
    text = re.sub(r"(\d)\s*(?:%|percent\b|per cent\b)", r"\1%", text)
    text = re.sub(r"(?<=\w)-(?=\w)", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _keyword_regex(keyword: str) -> re.Pattern:
    norm = normalize_text(keyword)
    left = r"(?<!\w)" if norm[:1].isalnum() or norm[:1] == "_" else ""
    if norm[:1].isdigit():
        left += r"(?<!\d[.,])"
    right = r"(?![\d]|[.,]\d)" if norm[-1:].isdigit() else ""
    return re.compile(left + re.escape(norm) + right)


def _keyword_in(keyword: str, normalized_text: str) -> bool:
    return bool(normalize_text(keyword)) and _keyword_regex(keyword).search(normalized_text) is not None


# ---------------------------------------------------------------- matchers
def evaluate_matcher(matcher: dict, normalized_answer: str) -> bool | None:
    """True / False / None (undecidable) for one matcher on an already normalized answer."""
    kind = matcher["type"]
    if kind == "keywords":
        results = []
        if "any" in matcher:
            results.append(any(_keyword_in(k, normalized_answer) for k in matcher["any"]))
        if "all" in matcher:
            results.append(all(_keyword_in(k, normalized_answer) for k in matcher["all"]))
        return all(results)
    if kind == "regex":
        return re.search(matcher["pattern"], normalized_answer, re.IGNORECASE) is not None
    if kind == "absent":
        inner = _absent_inner(matcher)
        found = evaluate_matcher(inner, normalized_answer)
        return None if found is None else not found
    if kind in ("all_of", "any_of"):
        results = [evaluate_matcher(m, normalized_answer) for m in matcher["matchers"]]
        decisive = kind == "any_of"   # any_of: one True decides; all_of: one False decides
        if decisive in results:
            return decisive
        return None if None in results else not decisive
    if kind == "judge":
        return None
    raise ValueError(f"unknown matcher type {kind!r}; use keywords, regex, absent, all_of, any_of or judge")


def _absent_inner(matcher: dict) -> dict:
    if "matcher" in matcher:
        return matcher["matcher"]
    if "pattern" in matcher:
        return {"type": "regex", "pattern": matcher["pattern"]}
    return {"type": "keywords", **{k: matcher[k] for k in ("any", "all") if k in matcher}}


def is_penalty(check: dict) -> bool:
    return check["matcher"]["type"] == "absent"


# ---------------------------------------------------------------- scoring
def _run_judge(judge: Judge, question: str, answer: str, check: dict) -> tuple[bool | None, str | None]:
    try:
        verdict = judge(question, answer, check)
    except Exception as exc:  # a failing judge must not sink the whole scoring run
        return None, f"judge failed: {type(exc).__name__}: {exc}"[:200]
    if not isinstance(verdict, bool):
        return None, f"judge returned {type(verdict).__name__}, expected bool"
    return verdict, None


def score_question(question: str, answer: str, case: dict, judge: Judge | None = None) -> dict:
    """Score one answer against one case `{"question", "checks", optional "max_chars"}`."""
    normalized = normalize_text(answer)
    earned = penalty = total = 0.0
    failed, wrong_facts, undecided, judge_errors, judged = [], [], [], [], 0
    for check in case["checks"]:
        met = evaluate_matcher(check["matcher"], normalized)
        if met is None and judge is not None:
            judged += 1
            met, error = _run_judge(judge, question, answer, check)
            if error:
                judge_errors.append(f"{check['id']}: {error}")
        if met is None:
            undecided.append(check["id"])
            met = False
        if not is_penalty(check):
            total += check["weight"]
            earned += check["weight"] if met else 0.0
        elif not met:
            penalty += check["weight"]
        if not met:
            (wrong_facts if is_penalty(check) else failed).append(check["description"][:MAX_DESCRIPTION_IN_DETAILS])
    max_chars = case.get("max_chars", DEFAULT_MAX_CHARS)
    length_factor = min(1.0, max_chars / len(answer)) if answer else 1.0
    score = 100.0 * max(0.0, earned - penalty) / total * length_factor if total else 0.0
    result = {"score": round(score, 2), "failed": failed}   # failed: credit checks not met
    if wrong_facts:
        result["wrong_facts"] = wrong_facts                    # penalty checks triggered
    if undecided:
        result["undecided"] = undecided
    if judge_errors:
        result["judge_errors"] = judge_errors
    if length_factor < 1.0:
        result["length_factor"] = round(length_factor, 3)
        result["note"] = f"answer has {len(answer)} chars; over {max_chars} the score shrinks in proportion"
    result["judged"] = judged
    return result


def suite_of(question_id: str) -> str:
    """Questions from a --tests file have ids "<file stem>:<index>"; the task's own have none."""
    return question_id.rsplit(":", 1)[0] if ":" in question_id else ORIGINAL_SUITE


def score_answers(answers: dict, cases: dict, judge: Judge | None = None) -> dict:
    """Score `answers` {question_id: text} against `cases` {question_id: case}; returns metric and details.

    A case without an answer scores as the empty answer; an answer without a case is listed as unscored.
    """
    if not isinstance(answers, dict):
        raise ValueError(f"answers must be a dict of question id -> answer text, got {type(answers).__name__}")
    questions, problems = {}, []
    for qid, case in cases.items():
        answer = answers.get(qid, "")
        if not isinstance(answer, str):
            problems.append(f"{qid}: answer is {type(answer).__name__}, scored as empty")
            answer = ""
        elif qid not in answers:
            problems.append(f"{qid}: no answer, scored as empty")
        questions[qid] = score_question(case["question"], answer, case, judge)
    suites: dict[str, dict] = {}
    for qid, result in questions.items():
        suite = suites.setdefault(suite_of(qid), {"passed": 0, "total": 0, "score": 0.0})
        suite["total"] += 1
        suite["passed"] += result["score"] >= PASS_SCORE
        suite["score"] += result["score"]
    for suite in suites.values():
        suite["score"] = round(suite["score"] / suite["total"], 2)
    metric = round(sum(r["score"] for r in questions.values()) / len(questions), 2) if questions else 0.0
    details = {
        "questions": questions,
        "suites": suites,
        "undecided": sum(len(r.get("undecided", ())) for r in questions.values()),
        "judge_calls": sum(r.pop("judged") for r in questions.values()),
        "scoring": (f"per question: credit checks met minus wrong facts mentioned, x min(1, max_chars/length) "
                    f"(default max_chars {DEFAULT_MAX_CHARS}); metric = mean over questions"),
    }
    unscored = sorted(set(answers) - set(cases))
    if unscored:
        details["unscored"] = unscored[:20]
    if problems:
        details["problems"] = problems[:20]
    return {"metric": metric, "details": details}


# ---------------------------------------------------------------- validating cases
def iter_matchers(matcher: dict, negated: bool = False):
    """Yield (matcher, negated) for a matcher and everything nested in it."""
    yield matcher, negated
    if matcher["type"] == "absent":
        yield from iter_matchers(_absent_inner(matcher), not negated)
    elif matcher["type"] in ("all_of", "any_of"):
        for inner in matcher["matchers"]:
            yield from iter_matchers(inner, negated)


def _nested_repeat(parsed, inside_repeat: bool = False) -> bool:
    """True when a repeated part of the pattern itself repeats or alternates (catastrophic backtracking)."""
    for op, arg in parsed:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            repeats = high is _regex_parser.MAXREPEAT or high > 1
            if repeats and inside_repeat:
                return True
            if _nested_repeat(sub, inside_repeat or repeats):
                return True
        elif name == "BRANCH":
            if inside_repeat:
                return True
            if any(_nested_repeat(branch, inside_repeat) for branch in arg[1]):
                return True
        elif name == "SUBPATTERN":
            if _nested_repeat(arg[-1], inside_repeat):
                return True
        elif name in ("ASSERT", "ASSERT_NOT"):
            if _nested_repeat(arg[1], inside_repeat):
                return True
    return False


def _repeat_counts(parsed) -> tuple[int, int]:
    """(repeats that can match more than once, those of them with a bound over MAX_BOUNDED_REPEAT)."""
    variable = long = 0
    for op, arg in parsed:
        name = str(op)
        children = []
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            if high is _regex_parser.MAXREPEAT or high > 1:
                variable += 1
                long += high is _regex_parser.MAXREPEAT or high > MAX_BOUNDED_REPEAT
            children = [sub]
        elif name == "BRANCH":
            children = arg[1]
        elif name == "SUBPATTERN":
            children = [arg[-1]]
        elif name in ("ASSERT", "ASSERT_NOT"):
            children = [arg[1]]
        for child in children:
            child_variable, child_long = _repeat_counts(child)
            variable, long = variable + child_variable, long + child_long
    return variable, long


def _pattern_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
        parsed = _regex_parser.parse(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        return f"regex {pattern!r} does not compile: {exc}"
    if _nested_repeat(parsed):
        return (f"regex {pattern!r} repeats a group that itself repeats or alternates; rewrite it without "
                f"nested repetition (e.g. [^.]{{0,40}} instead of (\\w+ )*)")
    variable, long = _repeat_counts(parsed)
    if variable > MAX_VARIABLE_REPEATS or long > MAX_LONG_REPEATS:
        return (f"regex {pattern!r} has {variable} variable-length parts ({long} unbounded or longer than "
                f"{MAX_BOUNDED_REPEAT}); at most {MAX_VARIABLE_REPEATS} ({MAX_LONG_REPEATS}) keep matching fast")
    return None


_DERIVED_NUMBER = re.compile(r"^\$?\d+(\.\d+)?%?$")


def _grounded(keyword: str, normalized_kb: str) -> bool:
    """A keyword is answerable from the KB when it occurs there; a bare number or amount ("$45", "10%")
    may be the result of arithmetic on KB facts, so it counts as grounded."""
    return bool(_DERIVED_NUMBER.match(normalize_text(keyword))) or _keyword_in(keyword, normalized_kb)


def _json_depth(value) -> int:
    """Nesting depth of JSON data, without recursion (hostile input could nest thousands deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_CASE_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def kb_text(kb: list[dict]) -> str:
    return normalize_text("\n".join(f"{a.get('title', '')}\n{a.get('body', '')}" for a in kb))


def validate_case(case, kb: list[dict], *, normalized_kb: str | None = None) -> str | None:
    """None when `case` is well formed and answerable from `kb`, else the reason it is not.

    Checks: the JSON schema, unique check ids, at least one credit check, and each check as
    `validate_check` does. Whether the expected facts are *right* is not decided here: an LLM referee does that."""
    if _json_depth(case) > MAX_CASE_DEPTH:
        return f"case is nested more than {MAX_CASE_DEPTH} levels deep; flatten its matchers"
    problem = _schema_problem(case, CASE_SCHEMA, "case")
    if problem:
        return problem
    ids = [check["id"] for check in case["checks"]]
    if len(set(ids)) != len(ids):
        return f"check ids must be unique, got {ids}"
    if all(is_penalty(check) for check in case["checks"]):
        return "the case needs at least one credit check (not 'absent'): an empty answer would score full marks"
    normalized_kb = normalized_kb if normalized_kb is not None else kb_text(kb)
    for check in case["checks"]:
        problem = _check_content_problem(check, normalized_kb)
        if problem:
            return problem
    return None


CHECK_SCHEMA = {"$ref": "#/$defs/check", "$defs": CASE_SCHEMA["$defs"]}


def _schema_problem(value, schema: dict, what: str) -> str | None:
    """"<where>: <message>" when `value` breaks the schema (the form rubric authors and test agents are shown)."""
    import jsonschema  # imported here so matching works without it
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        return f"{'/'.join(str(p) for p in exc.absolute_path) or what}: {exc.message[:300]}"
    return None


def validate_check(check, kb: list[dict], *, normalized_kb: str | None = None) -> str | None:
    """None when one check is well formed and, for credit keywords, grounded in `kb`; else the reason.
    Lets a rubric generator drop a single bad check instead of a whole case."""
    if _json_depth(check) > MAX_CASE_DEPTH - 2:   # a check sits two levels down in a case
        return f"check is nested more than {MAX_CASE_DEPTH - 2} levels deep; flatten its matchers"
    problem = _schema_problem(check, CHECK_SCHEMA, "check")
    if problem:
        return problem
    return _check_content_problem(check, normalized_kb if normalized_kb is not None else kb_text(kb))


def _check_content_problem(check: dict, normalized_kb: str) -> str | None:
    """Finite weight, safe regexes, no blank keywords, credit keywords that occur in the KB (bare numbers exempt)."""
    if not math.isfinite(check["weight"]):
        return f"check {check['id']}: weight must be a positive finite number"
    for matcher, negated in iter_matchers(check["matcher"]):
        if matcher["type"] == "regex" or (matcher["type"] == "absent" and "pattern" in matcher):
            problem = _pattern_problem(matcher["pattern"])
            if problem:
                return f"check {check['id']}: {problem}"
        keywords = matcher.get("any", []) + matcher.get("all", []) if matcher["type"] != "regex" else []
        if any(isinstance(k, str) and not normalize_text(k) for k in keywords):
            return f"check {check['id']}: a keyword is blank after normalization"
        if matcher["type"] != "keywords" or negated:
            continue   # wrong facts need not be in the knowledge base
        missing = [k for k in matcher.get("all", []) if not _grounded(k, normalized_kb)]
        if missing:
            return (f"check {check['id']}: keywords {missing} appear nowhere in the knowledge base, "
                    f"so the question is not answerable from it")
        if "any" in matcher and not any(_grounded(k, normalized_kb) for k in matcher["any"]):
            return (f"check {check['id']}: none of the keywords {matcher['any']} appears in the knowledge "
                    f"base, so the question is not answerable from it")
    return None
