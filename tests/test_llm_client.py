"""The shared client on the scripted and replay providers and on fake providers: ordering, schemas,
budgets, deadlines, resumable state, record/replay, provider selection, and the sandbox broker."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

import tasks.llm.client as client_module
from tasks.llm import BudgetExceeded, LLMClient, LLMError, TransientLLMError, make_client
from tasks.llm.client import CALL_SEED_STRIDE
from tasks.llm.base import ProviderReply
from tasks.llm.broker import BrokerRefusal, make_llm_host_function
from tasks.llm.providers import HOW_TO_GET_A_PROVIDER, choose_provider_name
from tasks.llm.providers.http_common import parse_retry_after

SCHEMA = {"type": "object", "properties": {"verdict": {"enum": ["keep", "drop"]}}, "required": ["verdict"]}


def write_script(tmp_path, lines, name="script.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


class FakeProvider:
    """Replies from a list of outcomes: a string (a reply) or an exception (raised)."""

    def __init__(self, outcomes, name="openai", model="gpt-4o-mini", tokens=(1000, 1000)):
        self.outcomes = list(outcomes)
        self.name, self.model = name, model
        self.tokens = tokens
        self.calls = []

    def generate(self, prompt, *, role, system, max_tokens, temperature, seed, schema, timeout):
        self.calls.append({"prompt": prompt, "role": role, "timeout": timeout, "seed": seed})
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return ProviderReply(text=outcome, tokens_in=self.tokens[0], tokens_out=self.tokens[1],
                             finish_reason="stop", model=self.model)


# ---- scripted provider ---------------------------------------------------------------------------
def test_scripted_serves_each_role_in_file_order(tmp_path):
    path = write_script(tmp_path, [{"role": "worker", "response": "w1"}, {"role": "reviewer", "response": "r1"},
                                   {"role": "worker", "response": "w2"}])
    client = make_client(f"scripted:{path}")
    assert [client.complete("worker", "anything").text, client.complete("reviewer", "?").text,
            client.complete("worker", "else").text] == ["w1", "r1", "w2"]
    assert client.describe() == "scripted:script.jsonl"
    usage = client.usage()
    assert usage["calls"] == 3 and usage["by_role"]["worker"]["calls"] == 2 and usage["cost_usd"] == 0.0


def test_scripted_exhaustion_names_the_role_and_count(tmp_path):
    path = write_script(tmp_path, [{"role": "worker", "response": "only one"}])
    client = make_client(f"scripted:{path}")
    client.complete("worker", "x")
    with pytest.raises(LLMError, match=r"role 'worker' is exhausted after 1 replies"):
        client.complete("worker", "x")
    with pytest.raises(LLMError, match=r"role 'tester' is exhausted after 0 replies"):
        client.complete("tester", "x")


def test_scripted_bad_lines_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"role": "worker", "response": "ok"}\n{"role": "worker"}\n')
    with pytest.raises(LLMError, match=r"bad.jsonl:2: .*\"response\""):
        make_client(f"scripted:{path}")
    path.write_text("not json\n")
    with pytest.raises(LLMError, match=r"bad.jsonl:1: not a JSON line"):
        make_client(f"scripted:{path}")


def test_scripted_length_finish_is_truncated(tmp_path):
    path = write_script(tmp_path, [{"role": "worker", "response": "def f(", "finish_reason": "length",
                                    "tokens_in": 9, "tokens_out": 3}])
    reply = make_client(f"scripted:{path}").complete("worker", "x")
    assert reply.truncated and (reply.tokens_in, reply.tokens_out) == (9, 3)


# ---- structured output ---------------------------------------------------------------------------
def test_schema_reply_in_a_fence_is_parsed(tmp_path):
    path = write_script(tmp_path, [{"role": "reviewer", "response": '```json\n{"verdict": "keep"}\n```'}])
    reply = make_client(f"scripted:{path}").complete("reviewer", "judge", schema=SCHEMA)
    assert reply.data == {"verdict": "keep"}


def test_schema_violation_is_repaired_once_showing_the_error(tmp_path):
    path = write_script(tmp_path, [{"role": "reviewer", "response": '{"verdict": "maybe"}'},
                                   {"role": "reviewer", "response": '{"verdict": "drop"}'}])
    record = tmp_path / "calls.jsonl"
    client = make_client(f"scripted:{path}", record_to=record)
    reply = client.complete("reviewer", "judge this", schema=SCHEMA)
    assert reply.data == {"verdict": "drop"} and client.usage()["calls"] == 2
    repair_prompt = [json.loads(line) for line in record.read_text().splitlines()][1]["prompt"]
    assert repair_prompt.startswith("judge this") and "'maybe' is not one of" in repair_prompt


def test_schema_failure_after_repair_is_an_error(tmp_path):
    path = write_script(tmp_path, [{"role": "reviewer", "response": "nope"},
                                   {"role": "reviewer", "response": "{broken"}])
    with pytest.raises(LLMError, match="role 'reviewer'.*even after one repair.*not valid JSON"):
        make_client(f"scripted:{path}").complete("reviewer", "judge", schema=SCHEMA)


def test_truncated_schema_reply_is_returned_without_repair(tmp_path):
    path = write_script(tmp_path, [{"role": "reviewer", "response": '{"verd', "finish_reason": "length"}])
    client = make_client(f"scripted:{path}")
    reply = client.complete("reviewer", "judge", schema=SCHEMA)
    assert reply.truncated and reply.data is None and client.usage()["calls"] == 1


def test_invalid_arguments_are_rejected_before_any_call(tmp_path):
    client = LLMClient(FakeProvider([]))
    with pytest.raises(ValueError, match="schema is not a valid JSON schema"):
        client.complete("worker", "x", schema={"type": "no-such-type"})
    with pytest.raises(ValueError, match="max_tokens"):
        client.complete("worker", "x", max_tokens=0)
    with pytest.raises(ValueError, match="role"):
        client.complete("", "x")
    assert client.usage()["calls"] == 0


# ---- retries, deadline, budgets ------------------------------------------------------------------
def test_transient_errors_retry_and_final_errors_do_not():
    sleeps = []
    provider = FakeProvider([TransientLLMError("503"), TransientLLMError("429", retry_after=2.5), "ok"])
    client = LLMClient(provider, sleep=sleeps.append)
    assert client.complete("worker", "x").text == "ok"
    assert len(provider.calls) == 3 and sleeps[1] == 2.5 and 0 < sleeps[0] <= 30
    provider = FakeProvider([LLMError("401 bad key"), "never"])
    with pytest.raises(LLMError, match="401 bad key"):
        LLMClient(provider, sleep=sleeps.append).complete("worker", "x")
    assert len(provider.calls) == 1


def test_no_retry_starts_past_the_deadline():
    sleeps = []
    provider = FakeProvider([TransientLLMError("429", retry_after=100.0), "too late"])
    client = LLMClient(provider, sleep=sleeps.append, deadline=30.0, timeout=60.0)
    with pytest.raises(LLMError, match="failed after 1 attempt"):
        client.complete("worker", "x")
    assert sleeps == [] and len(provider.calls) == 1
    assert provider.calls[0]["timeout"] <= 30.0  # the attempt itself is capped by the deadline


def test_a_passed_deadline_stops_the_run_cleanly():
    client = LLMClient(FakeProvider(["unused"]), deadline=0.0)
    with pytest.raises(BudgetExceeded, match="deadline"):
        client.complete("worker", "x")


def test_max_calls_budget():
    client = LLMClient(FakeProvider(["a", "b", "c"]), max_calls=2)
    client.complete("worker", "x")
    client.complete("worker", "y")
    with pytest.raises(BudgetExceeded, match="max_calls=2"):
        client.complete("worker", "z")
    with pytest.raises(BudgetExceeded):
        client.check_budget()


def test_max_cost_budget_uses_prices():
    # gpt-4o-mini: 1000 tokens in and out cost (1000*0.15 + 1000*0.60)/1e6 = $0.00075 a call
    client = LLMClient(FakeProvider(["a", "b", "c"]), max_cost=0.0015)
    assert client.complete("worker", "x").cost_usd == pytest.approx(0.00075)
    client.complete("worker", "y")
    assert client.usage()["cost_usd"] == pytest.approx(0.0015)
    with pytest.raises(BudgetExceeded, match="cost budget"):
        client.complete("worker", "z")


def test_price_lookup_takes_the_longest_prefix():
    client = LLMClient(FakeProvider(["a"], model="gpt-4o-mini-2024-07-18"))
    assert client.complete("worker", "x").cost_usd == pytest.approx(0.00075)


def test_local_calls_cost_nothing():
    client = LLMClient(FakeProvider(["a"], name="local", model="gpt-4o"))
    assert client.complete("worker", "x").cost_usd == 0.0


def test_each_call_gets_its_own_reproducible_seed():
    provider, again = FakeProvider(["a", "b"]), FakeProvider(["a", "b"])
    for fake in (provider, again):
        client = LLMClient(fake, seed=1234)
        client.complete("worker", "x")
        client.complete("worker", "x")
    seeds = [call["seed"] for call in provider.calls]
    assert seeds == [1234 * CALL_SEED_STRIDE % 2**31, (1234 * CALL_SEED_STRIDE + 1) % 2**31]
    assert seeds == [call["seed"] for call in again.calls]  # the same run gets the same seeds
    unseeded = FakeProvider(["a"])
    LLMClient(unseeded).complete("worker", "x")
    assert unseeded.calls[0]["seed"] is None


# ---- resumable state -----------------------------------------------------------------------------
def test_state_dict_resumes_the_script_and_usage(tmp_path):
    path = write_script(tmp_path, [{"role": "worker", "response": f"w{i}"} for i in range(4)])
    first = make_client(f"scripted:{path}", max_calls=3)
    first.complete("worker", "x")
    first.complete("worker", "x")
    state = json.loads(json.dumps(first.state_dict()))  # must survive a JSON checkpoint
    resumed = make_client(f"scripted:{path}", max_calls=3)
    resumed.load_state_dict(state)
    assert resumed.complete("worker", "x").text == "w2"
    assert resumed.usage()["calls"] == 3 and resumed.usage()["by_role"]["worker"]["calls"] == 3
    with pytest.raises(BudgetExceeded):
        resumed.complete("worker", "x")


# ---- record and replay ---------------------------------------------------------------------------
def run_session(client):
    replies = [client.complete("worker", "write f", system="you code", max_tokens=200, temperature=0.3),
               client.complete("reviewer", "judge f", schema=SCHEMA),
               client.complete("worker", "write f", system="you code", max_tokens=200, temperature=0.3)]
    return [(r.text, r.data, r.truncated, r.tokens_in, r.tokens_out) for r in replies]


def test_recorded_run_replays_identically(tmp_path):
    script = write_script(tmp_path, [
        {"role": "worker", "response": "def f(): return 1"}, {"role": "reviewer", "response": "garbage"},
        {"role": "reviewer", "response": '{"verdict": "keep"}'}, {"role": "worker", "response": "def f(): return 2"}])
    cassette = tmp_path / "run.jsonl"
    recorded = run_session(make_client(f"scripted:{script}", record_to=cassette, seed=7))
    entries = [json.loads(line) for line in cassette.read_text().splitlines()]
    assert len(entries) == 4 and entries[0]["parameters"] == {
        "system": "you code", "max_tokens": 200, "temperature": 0.3, "seed": 7 * CALL_SEED_STRIDE, "schema": None}
    replayer = make_client(f"replay:{cassette}", seed=7)
    assert run_session(replayer) == recorded
    assert replayer.usage()["calls"] == 4 and replayer.describe() == "replay:script.jsonl"


def test_replay_miss_says_the_run_differs(tmp_path):
    script = write_script(tmp_path, [{"role": "worker", "response": "x"}])
    cassette = tmp_path / "run.jsonl"
    make_client(f"scripted:{script}", record_to=cassette).complete("worker", "the recorded prompt")
    replayer = make_client(f"replay:{cassette}")
    with pytest.raises(LLMError, match=r"role 'worker', prompt starting 'a different prompt.*differs from the recording"):
        replayer.complete("worker", "a different prompt entirely")
    replayer.complete("worker", "the recorded prompt")
    with pytest.raises(LLMError, match="recorded 1 time"):
        replayer.complete("worker", "the recorded prompt")


# ---- provider selection --------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch):
    for name in ("LLM_PROVIDER", "LLM_MODEL", "GEMINI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL",
                 "GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(client_module, "load_dotenv_files", lambda: None)  # a developer's .env stays out
    monkeypatch.setattr("tasks.llm.providers.llama_cpp_available", lambda: False)
    return monkeypatch


def test_auto_selection_order(clean_env):
    with pytest.raises(LLMError) as error:
        choose_provider_name(None)
    for hint in ("GEMINI_API_KEY", "OPENAI_BASE_URL", "requirements-local.txt"):
        assert hint in str(error.value)
    clean_env.setattr("tasks.llm.providers.llama_cpp_available", lambda: True)
    assert choose_provider_name(None) == "local"
    clean_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    assert choose_provider_name(None) == "openai"
    clean_env.setenv("GEMINI_API_KEY", "k")
    assert choose_provider_name(None) == "gemini"
    clean_env.setenv("LLM_PROVIDER", "openai")
    assert choose_provider_name(None) == "openai"
    assert choose_provider_name("scripted:x.jsonl") == "scripted:x.jsonl"


def test_make_client_builds_the_chosen_provider_without_network(clean_env):
    clean_env.setenv("GEMINI_API_KEY", "test-key")
    assert make_client().describe() == "gemini:gemini-3.8-flash"
    clean_env.setenv("LLM_MODEL", "gemini-2.5-flash")
    assert make_client().describe() == "gemini:gemini-2.5-flash"
    clean_env.delenv("GEMINI_API_KEY")
    clean_env.delenv("LLM_MODEL")
    clean_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    assert make_client().describe() == "openai:gpt-4o-mini"
    assert make_client("openai", "llama3").describe() == "openai:llama3"


def test_no_provider_and_bad_names_are_clear_errors(clean_env):
    with pytest.raises(LLMError, match="no LLM provider is configured"):
        make_client()
    assert HOW_TO_GET_A_PROVIDER.startswith("no LLM provider")
    with pytest.raises(LLMError, match="unknown LLM provider 'anthropic'"):
        make_client("anthropic")
    with pytest.raises(LLMError, match="needs an API key"):
        make_client("gemini")


def test_local_without_llama_cpp_is_a_clear_error(clean_env, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "tasks.llm.local", None)  # as if the module could not be imported
    with pytest.raises(LLMError, match="requirements-local.txt"):
        make_client("local")


# ---- the broker ----------------------------------------------------------------------------------
def scripted_broker(tmp_path, responses, **client_kwargs):
    path = write_script(tmp_path, [{"role": "worker", "response": r} for r in responses])
    client = make_client(f"scripted:{path}", **client_kwargs)
    return client, make_llm_host_function(client, {"worker", "tester"})


def test_broker_returns_plain_data_and_counts_calls(tmp_path):
    client, llm = scripted_broker(tmp_path, ["hello", '{"verdict": "keep"}'])
    assert llm("worker", "hi") == {"text": "hello", "truncated": False, "data": None}
    result = llm("worker", "judge", SCHEMA, 100)
    assert result["data"] == {"verdict": "keep"}
    json.dumps(result)  # plain JSON data only
    assert client.usage()["by_role"]["worker"]["calls"] == 2


@pytest.mark.parametrize("args, message", [
    (("boss", "hi"), "role must be one of"),
    ((None, "hi"), "role must be one of"),
    (("worker", 42), "prompt must be a string"),
    (("worker", "   "), "prompt is empty"),
    (("worker", "x" * 40_001), "limit is 40000"),
    (("worker", "hi", "not a dict"), "schema must be"),
    (("worker", "hi", {"type": "object", "x": "y" * 20_000}), "the limit is 10000"),
    (("worker", "hi", {"type": 5}), "not a valid JSON schema"),
    (("worker", "hi", None, 0), "max_tokens must be an integer"),
    (("worker", "hi", None, 10**6), "max_tokens must be an integer"),
    (("worker", "hi", None, True), "max_tokens must be an integer"),
])
def test_broker_rejects_bad_arguments(tmp_path, args, message):
    client, llm = scripted_broker(tmp_path, ["unused"])
    with pytest.raises(BrokerRefusal, match=message):
        llm(*args)
    assert client.usage()["calls"] == 0


def test_broker_is_capped_by_the_run_budget(tmp_path):
    client, llm = scripted_broker(tmp_path, ["a", "b"], max_calls=1)
    llm("worker", "one")
    with pytest.raises(BudgetExceeded):
        llm("worker", "two")
    assert client.usage()["calls"] == 1


def test_broker_errors_never_carry_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "secret-key-123456")
    llm = make_llm_host_function(LLMClient(FakeProvider([LLMError("bad key secret-key-123456")])), ["worker"])
    with pytest.raises(LLMError) as error:
        llm("worker", "x")
    assert "secret-key-123456" not in str(error.value) and "[redacted]" in str(error.value)


@settings(max_examples=60, deadline=None)
@given(role=st.one_of(st.text(max_size=8), st.integers(), st.none()),
       prompt=st.one_of(st.text(max_size=50), st.integers(), st.lists(st.text(max_size=3), max_size=2)),
       max_tokens=st.one_of(st.none(), st.integers(-5, 10_000), st.floats(allow_nan=False), st.text(max_size=3)))
def test_broker_fuzz_only_refuses_or_answers(role, prompt, max_tokens):
    provider = FakeProvider(["answer"] * 1)
    llm = make_llm_host_function(LLMClient(provider), ["worker"])
    try:
        result = llm(role, prompt, None, max_tokens)
    except BrokerRefusal:
        assert provider.calls == []
    else:
        assert result == {"text": "answer", "truncated": False, "data": None}
        assert role == "worker" and isinstance(prompt, str)


# ---- Retry-After parsing -------------------------------------------------------------------------
def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_broker_through_a_real_sandbox(tmp_path):
    from tasks.sandbox import Sandbox
    agent = tmp_path / "agent.py"
    agent.write_text(
        "import os, sandbox_host\n"
        "def run():\n"
        "    reply = sandbox_host.call('llm', 'worker', 'improve this')\n"
        "    try:\n"
        "        sandbox_host.call('llm', 'boss', 'x')\n"
        "        refused = None\n"
        "    except sandbox_host.HostError as exc:\n"
        "        refused = str(exc)\n"
        "    return {'reply': reply, 'refused': refused, 'key': os.environ.get('GEMINI_API_KEY')}\n")
    client, llm = scripted_broker(tmp_path, ["better code"])
    with Sandbox(agent, host_functions={"llm": llm}) as box:
        result = box.call("run")
    assert result["reply"] == {"text": "better code", "truncated": False, "data": None}
    assert "BrokerRefusal" in result["refused"] and "role must be one of" in result["refused"]
    assert result["key"] is None
    assert client.usage()["calls"] == 1
