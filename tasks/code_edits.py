"""Turn an LLM reply into a candidate solution file, or reject it with feedback fit for the LLM.

Every level uses `candidate_from_reply`. A reply is either SEARCH/REPLACE edit blocks (what the prompts
ask a weak local model for, see `describe_edit_format`) or a whole file in a fenced code block. Nothing
is ever guessed: an edit that does not match, a malformed block, an unclosed fence or a reply without
code raises `CandidateRejected`; prose is never treated as code and a failing edit is never skipped.

Decisions worth knowing:
- Edits are applied in order, each to the result of the previous one, and all-or-nothing.
- A SEARCH is matched as whole lines: exactly first; failing that, ignoring trailing spaces, a uniform
  indentation shift (applied to the REPLACE lines too) and blank lines at the ends of the SEARCH.
  Either way the match must be unique; overlapping occurrences count as ambiguous.
- An empty (or whitespace-only) SEARCH appends its REPLACE text to the end of the file; it is the only
  way to add code without anchoring it to existing lines.
- A line that is just a code fence at the start or end of a SEARCH/REPLACE section is dropped (weak
  models fence the sections themselves).
- A fence that is never closed is not a candidate: its reply was probably cut short.
- "Unchanged" compares the programs without whitespace, comments and docstrings: a candidate that differs
  only there cannot score differently, so it is rejected before any benchmark time is spent.
- A fenced block that writes out only some of the file's functions is a function-level edit: it is merged
  into the current file by name (tasks/code_merge.py); one that defines them all is the whole new file.
"""
from __future__ import annotations

import ast
import difflib
import io
import re
import tokenize
import warnings
from dataclasses import dataclass
from typing import Sequence

from tasks.code_merge import merge_definitions

# --- tunables -------------------------------------------------------------------------------------
DEFAULT_MAX_CHARS = 30_000
# A reply this many times the file-size limit cannot be a sensible answer; refuse before parsing it.
MAX_REPLY_FACTOR = 10
PREVIEW_LINES = 3          # lines of a failing SEARCH shown back to the model
PREVIEW_LINE_CHARS = 120   # and how much of each
CLOSE_MATCH_CUTOFF = 0.6   # difflib ratio above which we point the model at a similar line
PYTHON_TAGS = {"python", "py", "python3", "py3"}

REJECTION_KINDS = ("truncated", "no_code", "edit_mismatch", "syntax_error", "unchanged",
                   "too_large", "missing_function")

_SEARCH_RE = re.compile(r"^[ \t]*<{5,9}[ \t]*SEARCH[ \t]*$", re.IGNORECASE)
_DIVIDER_RE = re.compile(r"^[ \t]*={5,9}[ \t]*$")
_REPLACE_RE = re.compile(r"^[ \t]*>{5,9}[ \t]*REPLACE[ \t]*$", re.IGNORECASE)
_FENCE_RE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")

_EDIT_FORMAT_TEXT = """\
Reply with one or more SEARCH/REPLACE blocks. Each block changes one place in the current file:

<<<<<<< SEARCH
def add(a, b):
    return 0
=======
def add(a, b):
    return a + b
>>>>>>> REPLACE

Rules:
- The lines between SEARCH and ======= must be copied exactly from the current file, including
  indentation, and must appear only once in it (add a neighbouring line if they are not unique).
  Never write "..." to skip lines, and never add line numbers.
- The lines between ======= and REPLACE are what those lines become. Leave it empty to delete them.
- Keep each block small: a few lines around the change. Use several blocks for several changes.
- To add new code at the end of the file, leave the SEARCH part empty.
- If any block does not match, none of them are applied.
"""


class CandidateRejected(Exception):
    """The reply cannot become a candidate. `message` is written to be shown to the LLM next time."""

    def __init__(self, kind: str, message: str):
        if kind not in REJECTION_KINDS:
            raise ValueError(f"unknown rejection kind {kind!r}; use one of {REJECTION_KINDS}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    def __reduce__(self):  # picklable across processes despite the two-argument constructor
        return (type(self), (self.kind, self.message))


@dataclass(frozen=True)
class EditBlock:
    search: str      # text to find ("" appends `replace` to the end of the file)
    replace: str     # text it becomes
    number: int = 1  # 1-based position in the reply, used in error messages
    line: int = 0    # line of the reply where the block starts (1-based, 0 if unknown)


_FUNCTION_FORMAT_TEXT = """\
Reply with one ```python block that contains only the function(s) you change, each written out in full
with the same name. Functions you leave out stay as they are. You may add new helper functions and imports.
"""
# Which answer format the prompts ask for. Every format is accepted whatever the prompts ask for.
# "functions" suits weak local models (measured: Qwen2.5-Coder-0.5B writes whole functions well and rarely
# produces SEARCH/REPLACE markers); "search_replace" gives shorter answers from models that can follow it.
EDIT_FORMATS = {"functions": _FUNCTION_FORMAT_TEXT, "search_replace": _EDIT_FORMAT_TEXT}
EDIT_FORMAT_ENV = "SIA_EDIT_FORMAT"


def describe_edit_format(style: str | None = None) -> str:
    """Short answer-format instructions for prompts: `style`, else $SIA_EDIT_FORMAT, else "functions"."""
    import os
    style = style or os.environ.get(EDIT_FORMAT_ENV) or "functions"
    if style not in EDIT_FORMATS:
        raise ValueError(f"{EDIT_FORMAT_ENV}={style!r} is not a known answer format; use one of {sorted(EDIT_FORMATS)}")
    return EDIT_FORMATS[style]


# --- whole-file extraction ------------------------------------------------------------------------
@dataclass
class _Fenced:
    tag: str          # first word of the info string, lower-cased ("" when untagged)
    text: str
    closed: bool
    line: int


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _fenced_blocks(text: str, first_line: int = 1) -> list[_Fenced]:
    """All fenced blocks, including ones nested in a longer fence (found by scanning block contents)."""
    lines = text.split("\n")
    blocks: list[_Fenced] = []
    i = 0
    while i < len(lines):
        opener = _FENCE_RE.match(lines[i])
        fence = opener and opener["fence"]
        if not opener or (fence[0] == "`" and "`" in opener["info"]):
            i += 1
            continue
        indent, info = opener["indent"], opener["info"].strip()
        tag = info.split()[0].lower().strip("{}.") if info else ""
        body: list[str] = []
        j = i + 1
        closed = False
        while j < len(lines):
            closer = _FENCE_RE.match(lines[j])
            if (closer and closer["fence"][0] == fence[0] and len(closer["fence"]) >= len(fence)
                    and not closer["info"].strip()):
                closed = True
                break
            # Content of an indented fence (e.g. in a list item) loses the fence's indentation.
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip(" \t"))
            j += 1
        content = "\n".join(body) + ("\n" if body else "")
        blocks.append(_Fenced(tag, content, closed, first_line + i))
        if closed:
            blocks.extend(_fenced_blocks(content, first_line + i + 1))
        i = j + 1
    return blocks


def _is_python_tag(tag: str) -> bool:
    return tag in PYTHON_TAGS or tag.endswith(".py")


def _compile_error(source: str) -> str | None:
    """None if `source` compiles, else a short description naming the line."""
    try:
        # Warnings (invalid escapes...) are not rejections; keep them from becoming errors or noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(source, "<candidate>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        text = (exc.text or "").rstrip("\n")
        shown = f"\n    {text.strip()[:PREVIEW_LINE_CHARS]}" if text.strip() else ""
        return f"{where}{exc.msg}{shown}"
    # compile() also fails with ValueError (NUL bytes), UnicodeError (lone surrogates) and
    # RecursionError/MemoryError (absurd nesting); all of them mean "not a usable Python file".
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names bound at module level by def, class, assignment or import (also inside top-level if/try/with)."""
    names: set[str] = set()
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody"):
                pending.extend(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                pending.extend(handler.body)
    return names


def _parse(source: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


def extract_code(reply: str, required_names: Sequence[str] = ()) -> str:
    """The whole-file code block of `reply`; prose outside fences is ignored.

    Among several blocks, prefers one that parses, then one defining more of `required_names`, then a
    python-tagged over an untagged one, then the longest. Blocks tagged with another language are
    never candidates. If no block parses, the best python block is still returned so the caller
    reports its syntax error."""
    blocks = _fenced_blocks(_normalize_newlines(reply))
    usable = [b for b in blocks if b.closed and (b.tag == "" or _is_python_tag(b.tag)) and b.text.strip()]
    if not usable:
        unclosed = [b for b in blocks if not b.closed]
        if unclosed:
            raise CandidateRejected(
                "no_code", f"The code block opened on line {unclosed[0].line} of your reply is never "
                "closed. End each code block with ``` on its own line.")
        others = sorted({b.tag for b in blocks if b.closed and b.tag})
        found = f" (found only blocks tagged {', '.join(others)})" if others else ""
        raise CandidateRejected(
            "no_code", f"Your reply has no ```python code block and no SEARCH/REPLACE edit block{found}. "
            "Reply with SEARCH/REPLACE blocks, or with the complete file in one ```python block.")

    def preference(block: _Fenced) -> tuple:
        tree = _parse(block.text)
        defined = _top_level_names(tree) if tree else set()
        return (tree is not None, sum(name in defined for name in required_names),
                _is_python_tag(block.tag), len(block.text))

    return max(usable, key=preference).text


# --- SEARCH/REPLACE edits -------------------------------------------------------------------------
def has_edit_blocks(reply: str) -> bool:
    """True if the reply contains a SEARCH or REPLACE marker line (then it is treated as edits)."""
    return any(_SEARCH_RE.match(l) or _REPLACE_RE.match(l) for l in _normalize_newlines(reply).split("\n"))


def _strip_fence_lines(lines: list[str]) -> list[str]:
    if lines and _FENCE_RE.match(lines[0]):
        lines = lines[1:]
    if lines and _FENCE_RE.match(lines[-1]) and not _FENCE_RE.match(lines[-1])["info"].strip():
        lines = lines[:-1]
    return lines


def _section_text(lines: list[str]) -> str:
    lines = _strip_fence_lines(lines)
    return "\n".join(lines) + "\n" if lines else ""


def parse_edit_blocks(reply: str) -> list[EditBlock]:
    """Every SEARCH/REPLACE block in `reply`, in order; raises CandidateRejected("edit_mismatch") if a
    block is malformed (missing or repeated marker), since guessing the intent could corrupt the file."""
    blocks: list[EditBlock] = []
    state, search, replace, start = "outside", [], [], 0

    def malformed(lineno: int, problem: str) -> CandidateRejected:
        return CandidateRejected(
            "edit_mismatch", f"Edit block {len(blocks) + 1} (line {lineno} of your reply) is malformed: "
            f"{problem}. Each block is <<<<<<< SEARCH, the old lines, =======, the new lines, >>>>>>> REPLACE.")

    for lineno, line in enumerate(_normalize_newlines(reply).split("\n"), start=1):
        is_search, is_divider, is_replace = (bool(_SEARCH_RE.match(line)), bool(_DIVIDER_RE.match(line)),
                                             bool(_REPLACE_RE.match(line)))
        if state == "outside":
            if is_search:
                state, search, replace, start = "search", [], [], lineno
            elif is_replace:
                raise malformed(lineno, "'>>>>>>> REPLACE' without a '<<<<<<< SEARCH' before it")
            # A lone ======= outside a block is prose (a Markdown heading underline), not an error.
        elif state == "search":
            if is_divider:
                state = "replace"
            elif is_search:
                raise malformed(lineno, "a second '<<<<<<< SEARCH' before the '=======' divider")
            elif is_replace:
                raise malformed(lineno, "'>>>>>>> REPLACE' before the '=======' divider")
            else:
                search.append(line)
        else:
            if is_replace:
                blocks.append(EditBlock(_section_text(search), _section_text(replace), len(blocks) + 1, start))
                state = "outside"
            elif is_search:
                raise malformed(lineno, "a new '<<<<<<< SEARCH' before '>>>>>>> REPLACE' closed this block")
            elif is_divider:
                raise malformed(lineno, "a second '=======' divider")
            else:
                replace.append(line)
    if state != "outside":
        raise malformed(start, "it is never closed with '>>>>>>> REPLACE' (was the reply cut off?)")
    return blocks


def _split_lines(text: str) -> list[str]:
    text = _normalize_newlines(text)
    if not text:
        return []
    lines = text.split("\n")
    return lines[:-1] if text.endswith("\n") else lines


def _indent_shift(search_line: str, source_line: str) -> tuple[str, str] | None:
    """How `source_line` differs from `search_line` by leading whitespace: ("add"|"remove", prefix)."""
    s, t = search_line.rstrip(), source_line.rstrip()
    if t.endswith(s) and not t[:len(t) - len(s)].strip(" \t"):
        return ("add", t[:len(t) - len(s)])
    if s.endswith(t) and not s[:len(s) - len(t)].strip(" \t"):
        return ("remove", s[:len(s) - len(t)])
    return None


def _tolerant_shift(search: list[str], window: list[str]) -> tuple[str, str] | None:
    shift = None
    for s, t in zip(search, window):
        if not s.strip() or not t.strip():
            if s.strip() or t.strip():
                return None
            continue
        this = _indent_shift(s, t)
        if this is None or (shift is not None and this != shift):
            return None
        shift = this
    return shift or ("add", "")


def _shift_lines(lines: list[str], shift: tuple[str, str]) -> list[str]:
    direction, prefix = shift
    if not prefix:
        return list(lines)
    if direction == "add":
        return [prefix + l if l.strip() else l for l in lines]
    return [l[len(prefix):] if l.startswith(prefix) else l.lstrip(" \t") for l in lines]


def _preview(lines: list[str]) -> str:
    shown = [l[:PREVIEW_LINE_CHARS] for l in lines[:PREVIEW_LINES]]
    more = "\n    ..." if len(lines) > PREVIEW_LINES else ""
    return "\n".join("    " + l for l in shown) + more


def _closest_line_hint(search: list[str], source: list[str]) -> str:
    first = next((l.strip() for l in search if l.strip()), "")
    # Keyed by stripped text so indentation does not hide the match; the first occurrence wins.
    candidates = {l.strip()[:200]: (n, l) for n, l in reversed(list(enumerate(source, start=1))) if l.strip()}
    close = difflib.get_close_matches(first[:200], list(candidates), n=1, cutoff=CLOSE_MATCH_CUTOFF)
    if not close:
        return ""
    number, line = candidates[close[0]]
    return f"\nThe most similar line in the current file is line {number}:\n    {line.rstrip()[:PREVIEW_LINE_CHARS]}"


def _apply_one(source: list[str], block: EditBlock) -> list[str]:
    search, replace = _split_lines(block.search), _split_lines(block.replace)
    if not any(l.strip() for l in search):
        return source + replace
    n = len(search)
    exact = [i for i in range(len(source) - n + 1) if source[i:i + n] == search]
    if len(exact) == 1:
        i = exact[0]
        return source[:i] + replace + source[i + n:]
    label = f"SEARCH of edit block {block.number}"
    if len(exact) > 1:
        raise CandidateRejected(
            "edit_mismatch", f"The {label} occurs {len(exact)} times in the current file, so it is ambiguous. "
            f"Its first lines:\n{_preview(search)}\nInclude more surrounding lines so it matches one place. "
            "No block was applied.")
    # Whitespace-tolerant: blank lines at the ends of SEARCH are ignored, then a uniform indent shift.
    first = next(k for k, l in enumerate(search) if l.strip())
    last = max(k for k, l in enumerate(search) if l.strip())
    core, m = search[first:last + 1], last - first + 1
    anchor = core[0].strip()
    tolerant = [(i, shift) for i in range(len(source) - m + 1) if source[i].strip() == anchor
                and (shift := _tolerant_shift(core, source[i:i + m])) is not None]
    if len(tolerant) == 1:
        i, shift = tolerant[0]
        return source[:i] + _shift_lines(replace, shift) + source[i + m:]
    if len(tolerant) > 1:
        raise CandidateRejected(
            "edit_mismatch", f"The {label} matches {len(tolerant)} places in the current file (ignoring "
            f"indentation), so it is ambiguous. Its first lines:\n{_preview(search)}\n"
            "Include more surrounding lines so it matches one place. No block was applied.")
    raise CandidateRejected(
        "edit_mismatch", f"The {label} was not found in the current file. Its first lines:\n{_preview(search)}"
        f"{_closest_line_hint(core, source)}\nCopy the SEARCH lines exactly from the current file. "
        "No block was applied.")


def apply_edits(source: str, blocks: list[EditBlock]) -> str:
    """Apply every block in order, or raise CandidateRejected("edit_mismatch") and apply none."""
    source = _normalize_newlines(source)
    lines = _split_lines(source)
    for block in blocks:
        lines = _apply_one(lines, block)
    return "\n".join(lines) + "\n" if lines else ""


# --- the entry point ------------------------------------------------------------------------------
def _line_form(source: str) -> tuple:
    return tuple(l.strip() for l in _split_lines(source) if l.strip())


def _token_form(source: str) -> tuple | None:
    """Python tokens without whitespace detail (indentation kept as structure), or None if untokenizable."""
    try:
        tokens = []
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER):
                continue
            if tok.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE):
                tokens.append((tok.type,))
            else:
                tokens.append((tok.type, tok.string.rstrip()))
        return tuple(tokens)
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _code_form(source: str) -> str | None:
    """The program without docstrings, comments or layout (an AST dump), or None if it does not parse."""
    tree = _parse(source)
    if tree is None:
        return None
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def _same_code(a: str, b: str) -> bool:
    """Nothing a benchmark could notice changed: only whitespace, comments or docstrings differ."""
    code_a, code_b = _code_form(a), _code_form(b)
    if code_a is None or code_b is None:  # e.g. the current file is broken: compare tokens, then lines
        tokens_a, tokens_b = _token_form(a), _token_form(b)
        if tokens_a is None or tokens_b is None:
            return _line_form(a) == _line_form(b)
        return tokens_a == tokens_b
    return code_a == code_b


def candidate_from_reply(reply: str, current_source: str, *, truncated: bool = False,
                         required_names: Sequence[str] = (), max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The new solution file the reply describes, checked; or CandidateRejected with LLM-ready feedback.

    `truncated` must be True when the model stopped at its token limit: such a reply is never used."""
    if truncated:
        raise CandidateRejected(
            "truncated", "Your reply was cut off at the token limit, so none of it was used. Write a shorter "
            "answer: change one function at a time, with no explanations.")
    if len(reply) > MAX_REPLY_FACTOR * max_chars:
        raise CandidateRejected(
            "too_large", f"Your reply is {len(reply)} characters, far over the {max_chars}-character file "
            "limit. Change one function at a time.")
    if has_edit_blocks(reply):
        candidate = apply_edits(current_source, parse_edit_blocks(reply))
    else:
        candidate = extract_code(reply, required_names)
        merged = merge_definitions(_normalize_newlines(current_source), candidate)
        if merged is not None:  # only some functions written out: a function-level edit
            candidate = merged

    if len(candidate) > max_chars:
        raise CandidateRejected(
            "too_large", f"The resulting file is {len(candidate)} characters, over the limit of {max_chars}. "
            "Make it shorter.")
    error = _compile_error(candidate)
    if error is not None:
        raise CandidateRejected("syntax_error", f"The resulting file does not compile: {error}")
    if _same_code(candidate, _normalize_newlines(current_source)):
        raise CandidateRejected(
            "unchanged", "Your answer does what the current code already does: it differs only in whitespace, "
            "comments or docstrings. Change what the code does.")
    tree = _parse(candidate)
    defined = _top_level_names(tree) if tree is not None else set()
    missing = [n for n in required_names if n not in defined]
    if missing:
        raise CandidateRejected(
            "missing_function", f"The resulting file no longer defines {', '.join(missing)} at top level. "
            "Keep these functions, with their names and parameters.")
    return candidate
