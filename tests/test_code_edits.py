"""Tests for tasks/code_edits.py: extraction, SEARCH/REPLACE edits, candidate checks, and fuzzing."""
import pickle
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.code_edits import (REJECTION_KINDS, CandidateRejected, EditBlock, apply_edits,
                              candidate_from_reply, describe_edit_format, extract_code,
                              parse_edit_blocks)

SOURCE = textwrap.dedent("""\
    def choose_move(state):
        moves = state["moves"]
        return moves[0]


    def helper(x):
        return x + 1


    def other(x):
        return x + 1
    """)

NEW_FILE = "def choose_move(state):\n    return state['moves'][-1]\n"


def edit(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def rejected(reply: str, source: str = SOURCE, **kwargs) -> CandidateRejected:
    with pytest.raises(CandidateRejected) as info:
        candidate_from_reply(reply, source, **kwargs)
    return info.value


# --- fenced-block extraction ---------------------------------------------------------------------
@pytest.mark.parametrize("opener,closer", [
    ("```python", "```"), ("```py", "```"), ("```", "```"), ("~~~", "~~~"), ("~~~python", "~~~"),
    ("```Python3", "```"), ("``` solution.py", "```"),
])
def test_each_fence_style_is_extracted(opener, closer):
    reply = f"Here is the code:\n{opener}\n{NEW_FILE}{closer}\nIt picks the last move."
    assert extract_code(reply) == NEW_FILE


def test_four_backtick_fence_wrapping_three_backtick_fence_yields_the_inner_code():
    reply = f"````markdown\nThe file:\n```python\n{NEW_FILE}```\n````\n"
    assert extract_code(reply) == NEW_FILE


def test_indented_fence_in_a_list_item_loses_its_indentation():
    reply = "1. Replace the file:\n   ```python\n   x = 1\n   def f():\n       return x\n   ```\n"
    assert extract_code(reply) == "x = 1\ndef f():\n    return x\n"


def test_crlf_reply_is_extracted_with_unix_newlines():
    reply = "```python\r\n" + NEW_FILE.replace("\n", "\r\n") + "```\r\n"
    assert extract_code(reply) == NEW_FILE


def test_block_defining_the_required_function_is_preferred_over_a_longer_one():
    usage = "```python\n" + "print(choose_move({'moves': [1, 2]}))\n" * 5 + "```\n"
    reply = f"{usage}\nFull file:\n```python\n{NEW_FILE}```\n"
    assert extract_code(reply, required_names=["choose_move"]) == NEW_FILE


def test_python_tagged_block_is_preferred_over_untagged_and_other_languages():
    reply = ("```bash\npip install numpy\n```\n```\nx = 1  # an untagged, longer block...........\n```\n"
             f"```python\n{NEW_FILE}```\n")
    assert extract_code(reply) == NEW_FILE


def test_longest_parsing_block_wins_when_none_defines_the_required_names():
    reply = "```python\nx = 1\n```\n```python\nx = 1\ny = 2\n```\n```python\nnot valid (\n```\n"
    assert extract_code(reply, required_names=["choose_move"]) == "x = 1\ny = 2\n"


def test_parsing_block_beats_a_longer_block_with_a_syntax_error():
    reply = "```python\ndef broken(:\n    return 1111111111111111111\n```\n```python\nx = 1\n```\n"
    assert extract_code(reply) == "x = 1\n"


def test_prose_only_reply_is_rejected_as_no_code():
    error = rejected("I would change choose_move to return the last move instead of the first.")
    assert error.kind == "no_code"
    assert "```python" in error.message


def test_only_non_python_blocks_is_no_code_and_names_the_languages():
    error = rejected("```json\n{\"a\": 1}\n```\n")
    assert error.kind == "no_code" and "json" in error.message


def test_unclosed_fence_is_never_used_as_code():
    error = rejected("Sure:\n```python\n" + NEW_FILE)
    assert error.kind == "no_code"
    assert "line 2" in error.message and "never closed" in error.message


# --- SEARCH/REPLACE parsing ----------------------------------------------------------------------
def test_parse_edit_blocks_inside_and_outside_fences_with_crlf_and_marker_lengths():
    reply = ("Change one:\n```python\n<<<<< SEARCH\na = 1\n=====\na = 2\n>>>>> REPLACE\n```\n"
             "and two:\n<<<<<<<<< SEARCH\nb = 1\n=========\nb = 2\n>>>>>>>>> REPLACE\n").replace("\n", "\r\n")
    blocks = parse_edit_blocks(reply)
    assert [(b.search, b.replace, b.number) for b in blocks] == [("a = 1\n", "a = 2\n", 1), ("b = 1\n", "b = 2\n", 2)]


def test_fence_lines_inside_a_section_are_dropped():
    blocks = parse_edit_blocks("<<<<<<< SEARCH\n```python\na = 1\n```\n=======\n```python\na = 2\n```\n>>>>>>> REPLACE\n")
    assert (blocks[0].search, blocks[0].replace) == ("a = 1\n", "a = 2\n")


@pytest.mark.parametrize("reply,problem", [
    ("<<<<<<< SEARCH\na\n>>>>>>> REPLACE\n", "before the '=======' divider"),
    ("<<<<<<< SEARCH\na\n=======\nb\n", "never closed"),
    ("<<<<<<< SEARCH\na\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n", "second '<<<<<<< SEARCH'"),
    ("<<<<<<< SEARCH\na\n=======\nb\n=======\nc\n>>>>>>> REPLACE\n", "second '======='"),
    ("a\n=======\nb\n>>>>>>> REPLACE\n", "without a '<<<<<<< SEARCH'"),
])
def test_malformed_edit_blocks_are_rejected_not_skipped(reply, problem):
    with pytest.raises(CandidateRejected) as info:
        parse_edit_blocks(reply)
    assert info.value.kind == "edit_mismatch" and problem in info.value.message


# --- applying edits ------------------------------------------------------------------------------
def test_edit_is_applied():
    reply = "I will return the last move.\n" + edit("    return moves[0]\n", "    return moves[-1]\n")
    result = candidate_from_reply(reply, SOURCE, required_names=["choose_move"])
    assert result == SOURCE.replace("moves[0]", "moves[-1]")


def test_multi_block_edit_is_all_or_nothing_and_names_the_failing_block():
    blocks = [EditBlock("    moves = state[\"moves\"]\n", "    moves = list(state[\"moves\"])\n", 1),
              EditBlock("    return moves[7]\n", "    return moves[-1]\n", 2)]
    with pytest.raises(CandidateRejected) as info:
        apply_edits(SOURCE, blocks)
    assert info.value.kind == "edit_mismatch"
    assert "block 2" in info.value.message and "return moves[7]" in info.value.message
    assert "line 3" in info.value.message  # points at the similar line "return moves[0]"
    reply = edit(blocks[0].search, blocks[0].replace) + edit(blocks[1].search, blocks[1].replace)
    assert rejected(reply).kind == "edit_mismatch"


def test_later_blocks_apply_to_the_result_of_earlier_ones():
    reply = edit("    return moves[0]\n", "    return moves[1]\n") + edit("    return moves[1]\n", "    return moves[2]\n")
    assert candidate_from_reply(reply, SOURCE) == SOURCE.replace("moves[0]", "moves[2]")


def test_ambiguous_search_is_rejected_with_its_count():
    error = rejected(edit("    return x + 1\n", "    return x + 2\n"))
    assert error.kind == "edit_mismatch"
    assert "2 times" in error.message and "block 1" in error.message


def test_search_made_unique_by_context_is_applied():
    reply = edit("def other(x):\n    return x + 1\n", "def other(x):\n    return x + 2\n")
    assert candidate_from_reply(reply, SOURCE).endswith("def other(x):\n    return x + 2\n")


def test_whitespace_tolerant_match_shifts_indentation_and_ignores_trailing_spaces():
    # The weak model dropped the function's indentation and left trailing spaces.
    reply = edit("moves = state[\"moves\"]   \nreturn moves[0]\n", "moves = sorted(state[\"moves\"])\nreturn moves[0]\n")
    result = candidate_from_reply(reply, SOURCE)
    assert "    moves = sorted(state[\"moves\"])\n    return moves[0]\n" in result


def test_whitespace_tolerant_match_must_be_unique():
    error = rejected(edit("return x + 1\n", "return x + 2\n"))
    assert error.kind == "edit_mismatch" and "ambiguous" in error.message


def test_non_uniform_indentation_does_not_match():
    assert rejected(edit("def helper(x):\nreturn x + 1\n", "def helper(x):\n    return x\n")).kind == "edit_mismatch"


def test_empty_search_appends_to_the_end():
    result = candidate_from_reply(edit("", "def extra():\n    return 2\n"), SOURCE)
    assert result == SOURCE + "def extra():\n    return 2\n"


def test_empty_replace_deletes_the_lines():
    result = candidate_from_reply(edit("def other(x):\n    return x + 1\n", ""), SOURCE)
    assert "other" not in result and "def helper" in result


# --- candidate checks ----------------------------------------------------------------------------
def test_truncated_reply_is_rejected_even_if_it_is_valid():
    error = rejected(f"```python\n{NEW_FILE}```\n", truncated=True)
    assert error.kind == "truncated" and "token limit" in error.message


def test_partial_reply_is_merged_by_function_name():
    # NEW_FILE writes out only choose_move: a function-level edit; helper and other stay as they are
    merged = candidate_from_reply(f"```python\n{NEW_FILE}```", SOURCE, required_names=["choose_move"])
    assert merged.startswith(NEW_FILE.rstrip("\n"))
    assert "def helper(x):\n    return x + 1" in merged and "def other(x):" in merged
    assert merged.count("def choose_move") == 1


def test_whole_file_reply_replaces_everything():
    whole = SOURCE.replace("return moves[0]", "return moves[-1]").replace("def other(x):\n    return x + 1\n", "")
    whole += "\n\ndef other(x):\n    return x - 1\n"
    assert candidate_from_reply(f"```python\n{whole}```", SOURCE) == whole


def test_function_level_edit_adds_new_helpers_imports_and_constants():
    reply = ("```python\nimport math\nSTEP = 2\n\ndef helper(x):\n    return math.floor(x) + STEP\n\n"
             "def brand_new(y):\n    return y\n```")
    merged = candidate_from_reply(reply, SOURCE)
    namespace = {}
    exec(merged, namespace)
    assert namespace["helper"](1.5) == 3 and namespace["brand_new"](4) == 4
    assert namespace["choose_move"]({"moves": [7, 8]}) == 7 and namespace["other"](1) == 2
    assert merged.index("import math") < merged.index("STEP = 2") < merged.index("def choose_move")


def test_edit_format_is_selectable(monkeypatch):
    assert "only the function(s) you change" in describe_edit_format()
    monkeypatch.setenv("SIA_EDIT_FORMAT", "search_replace")
    assert "SEARCH/REPLACE" in describe_edit_format()
    monkeypatch.setenv("SIA_EDIT_FORMAT", "diff")
    with pytest.raises(ValueError, match="SIA_EDIT_FORMAT"):
        describe_edit_format()


def test_unchanged_candidate_is_rejected_ignoring_whitespace():
    reformatted = SOURCE.replace("x + 1", "x+1").replace("\n\n\n", "\n") + "\n\n"
    assert rejected(f"```python\n{reformatted}```").kind == "unchanged"
    assert rejected(edit("    return moves[0]\n", "    return moves[0]   \n")).kind == "unchanged"


def test_indentation_change_is_a_real_change():
    source = "for i in range(3):\n    a = i\nb = 1\n"
    assert candidate_from_reply(edit("b = 1\n", "    b = 1\n"), source) == "for i in range(3):\n    a = i\n    b = 1\n"


def test_too_large_candidate_is_rejected():
    big = "x = 1\n" * 100
    error = rejected(f"```python\n{big}```", max_chars=200)
    assert error.kind == "too_large" and "200" in error.message


def test_syntax_error_message_includes_the_line():
    error = rejected(edit("    return moves[0]\n", "    return moves[0\n"))
    assert error.kind == "syntax_error"
    assert "line 3" in error.message and "return moves[0" in error.message


@pytest.mark.parametrize("code", [
    "x = '\x00'\n",                        # NUL byte
    "x = '\ud800'\n",                      # lone surrogate: UnicodeEncodeError from compile()
    "x = " + "-" * 200_000 + "1\n",        # MemoryError from compile()
    "f(" + "a.b." * 50_000 + "c)\n",       # RecursionError from compile()
])
def test_code_that_crashes_compile_is_a_syntax_error_rejection(code):
    assert rejected(f"```python\n{code}```", max_chars=10**6).kind == "syntax_error"


def test_missing_required_function_is_rejected():
    error = rejected(edit('def choose_move(state):\n    moves = state["moves"]\n    return moves[0]\n',
                          "def choose(state):\n    return 1\n"), required_names=["choose_move"])
    assert error.kind == "missing_function" and "choose_move" in error.message


def test_required_function_may_be_bound_by_import_or_assignment():
    reply = "```python\nfrom random import choice as choose_move\nhelper = len\n```"
    assert "choose_move" in candidate_from_reply(reply, SOURCE, required_names=["choose_move", "helper"])


def test_rejection_survives_pickling_for_worker_processes():
    error = pickle.loads(pickle.dumps(CandidateRejected("unchanged", "same")))
    assert (error.kind, error.message) == ("unchanged", "same")


def test_describe_edit_format_shows_a_block_that_parses():
    text = describe_edit_format("search_replace")
    blocks = parse_edit_blocks(text)
    assert len(blocks) == 1 and "return a + b" in blocks[0].replace


# --- property-based fuzzing ----------------------------------------------------------------------
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MARKERS = ["<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE", "```", "```python", "~~~", "````"]
VALID_REPLIES = [
    edit("    return moves[0]\n", "    return moves[-1]\n"),
    "Here:\n```python\n" + edit("def helper(x):\n    return x + 1\n", "def helper(x):\n    return x * 2\n") + "```\n",
    f"Full file:\n```python\n{NEW_FILE}```\nDone.",
    f"````\n```python\n{NEW_FILE}```\n````\n",
    edit("", "def extra():\n    return 1\n"),
]


def assert_valid_outcome(reply: str, **kwargs) -> None:
    try:
        result = candidate_from_reply(reply, SOURCE, **kwargs)
    except CandidateRejected as error:
        assert error.kind in REJECTION_KINDS and error.message.strip()
        return
    assert isinstance(result, str) and result != SOURCE
    compile(result, "<fuzz>", "exec")
    assert len(result) <= kwargs.get("max_chars", 30_000)


@FUZZ
@given(st.text(), st.booleans())
def test_arbitrary_text_yields_a_compiling_changed_file_or_a_rejection(reply, truncated):
    assert_valid_outcome(reply, truncated=truncated)


@st.composite
def mutated_replies(draw):
    reply = draw(st.sampled_from(VALID_REPLIES))
    for _ in range(draw(st.integers(0, 3))):
        mutation = draw(st.sampled_from(["cut", "insert_marker", "duplicate_line", "insert_text", "crlf"]))
        at = draw(st.integers(0, len(reply)))
        if mutation == "cut":
            reply = reply[:at]
        elif mutation == "insert_marker":
            reply = reply[:at] + "\n" + draw(st.sampled_from(MARKERS)) + "\n" + reply[at:]
        elif mutation == "duplicate_line":
            lines = reply.split("\n")
            k = draw(st.integers(0, len(lines) - 1))
            reply = "\n".join(lines[:k + 1] + lines[k:])
        elif mutation == "insert_text":
            reply = reply[:at] + draw(st.text(max_size=20)) + reply[at:]
        else:
            reply = reply.replace("\n", "\r\n")
    return reply


@FUZZ
@given(mutated_replies(), st.sampled_from([(), ("choose_move",)]))
def test_mutated_valid_replies_yield_a_compiling_changed_file_or_a_rejection(reply, required):
    assert_valid_outcome(reply, required_names=required)


# Replies assembled from the pieces that matter (markers, fences, lines of the source) reach the
# edit and fence logic far more often than uniformly random text does.
REPLY_PIECES = (list("`~<=>\n pyx():\t\r#\"'\x00") + [m + "\n" for m in MARKERS]
                + ["def f():\n", "    return 1\n", "    return moves[0]\n", "def helper(x):\n", "return x + 1\n"])


@FUZZ
@given(st.lists(st.sampled_from(REPLY_PIECES), max_size=60).map("".join))
def test_replies_assembled_from_markers_and_source_lines_never_escape(reply):
    assert_valid_outcome(reply, required_names=("choose_move",))


@FUZZ
@given(st.sampled_from(["choose_move", "helper", "other"]), st.integers(-10**6, 10**6), st.booleans())
def test_generated_valid_edits_apply_exactly(function, value, shifted):
    # Edits anchored on each function's unique def line always apply, with or without indentation.
    body = "moves = state[\"moves\"]\n    return moves[0]" if function == "choose_move" else "return x + 1"
    old = f"def {function}(" + SOURCE.split(f"def {function}(")[1].split("\n")[0] + "\n    " + body + "\n"
    new = old.rstrip("\n") + f"  # changed\n    CONSTANT_{abs(value)} = {value}\n"
    if shifted:  # the whole block indented by two more spaces than the file
        old, new = (textwrap.indent(old, "  "), textwrap.indent(new, "  "))
    result = candidate_from_reply(edit(old, new), SOURCE)
    assert f"CONSTANT_{abs(value)} = {value}" in result and result.count("def ") == 3


def test_a_change_only_to_comments_or_docstrings_is_unchanged():
    documented = '"""A module docstring."""\n# a comment\n' + SOURCE.replace(
        "def helper(x):\n", 'def helper(x):\n    """Adds one."""  \n')
    assert rejected(f"```python\n{documented}```").kind == "unchanged"
    # the model wrote the one function back unchanged: merged, it drops nothing and changes nothing
    same_function = 'def choose_move(state):\n    moves = state["moves"]\n    return moves[0]  # first\n'
    error = rejected(f"```python\n{same_function}```")
    assert error.kind == "unchanged" and "differs only in whitespace, comments or docstrings" in error.message
    assert candidate_from_reply(f"```python\n{same_function.replace('[0]', '[1]')}```", SOURCE)
