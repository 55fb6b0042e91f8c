"""The gemini and openai providers, run through their real SDKs against stub HTTP servers on 127.0.0.1,
wrapped in the shared client (retries, timeouts, truncation, structured output). No network."""
from __future__ import annotations

import email.utils
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.llm import LLMClient, LLMError
from tasks.llm.providers.gemini import GeminiProvider
from tasks.llm.providers.openai_compat import OpenAIProvider

TEST_TIMEOUT_S = 0.5
STALL_LIMIT_S = 5.0  # a silent or trickling stub gives up by itself after this long


class StubServer:
    """Serves a planned list of responses, one per request, and records what it was sent."""

    def __init__(self):
        self.plan: list[dict] = []
        self.requests: list[dict] = []
        self.stop = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                stub.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "body": json.loads(raw) if raw else None})
                action = stub.plan.pop(0) if stub.plan else {"status": 500, "body": {"error": "no plan left"}}
                mode = action.get("mode", "normal")
                if mode == "silent":
                    stub.stop.wait(STALL_LIMIT_S)
                    return
                payload = json.dumps(action.get("body", {})).encode()
                self.send_response(action.get("status", 200))
                self.send_header("Content-Type", "application/json")
                for name, value in action.get("headers", {}).items():
                    self.send_header(name, value)
                if mode == "trickle":  # promise a big body, then drip it a byte at a time
                    self.send_header("Content-Length", str(10_000))
                    self.end_headers()
                    started = time.monotonic()
                    while not stub.stop.is_set() and time.monotonic() - started < STALL_LIMIT_S:
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            return
                        stub.stop.wait(0.05)
                    return
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


class GeminiBackend:
    name = "gemini"
    model = "gemini-2.5-flash"
    truncated_reason = "MAX_TOKENS"

    def make(self, url, model=None):
        return GeminiProvider(model or self.model, api_key="test-gemini-key", base_url=url, timeout=TEST_TIMEOUT_S)

    def ok(self, text, finish="STOP", tokens_in=5, tokens_out=7):
        return {"status": 200, "body": {
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}],
            "usageMetadata": {"promptTokenCount": tokens_in, "candidatesTokenCount": tokens_out,
                              "totalTokenCount": tokens_in + tokens_out},
            "modelVersion": self.model}}

    def error(self, status, headers=None):
        return {"status": status, "headers": headers or {},
                "body": {"error": {"code": status, "message": f"stub error {status}", "status": "STUB"}}}

    def prompt_of(self, request):
        return request["body"]["contents"][0]["parts"][0]["text"]


class OpenAIBackend:
    name = "openai"
    model = "gpt-4o-mini"
    truncated_reason = "length"

    def make(self, url, model=None):
        return OpenAIProvider(model or self.model, api_key="test-openai-key", base_url=url + "/v1",
                              timeout=TEST_TIMEOUT_S)

    def ok(self, text, finish="stop", tokens_in=5, tokens_out=7, model=None):
        return {"status": 200, "body": {
            "id": "stub", "object": "chat.completion", "created": 0, "model": model or self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                      "total_tokens": tokens_in + tokens_out}}}

    def error(self, status, headers=None):
        return {"status": status, "headers": headers or {},
                "body": {"error": {"message": f"stub error {status}", "type": "stub", "code": None}}}

    def prompt_of(self, request):
        return request["body"]["messages"][-1]["content"]


@pytest.fixture
def stub():
    server = StubServer()
    yield server
    server.close()


@pytest.fixture(params=[GeminiBackend(), OpenAIBackend()], ids=["gemini", "openai"])
def backend(request):
    return request.param


def make_client(backend, stub, **kwargs):
    sleeps: list[float] = []
    client = LLMClient(backend.make(stub.url), timeout=TEST_TIMEOUT_S, sleep=sleeps.append, **kwargs)
    return client, sleeps


def test_success_returns_text_tokens_and_cost(backend, stub):
    stub.plan = [backend.ok("hello there", tokens_in=1000, tokens_out=2000)]
    client, sleeps = make_client(backend, stub)
    reply = client.complete("worker", "say hello", system="be brief", max_tokens=50, temperature=0.2)
    assert reply.text == "hello there"
    assert (reply.tokens_in, reply.tokens_out, reply.truncated) == (1000, 2000, False)
    assert reply.provider == backend.name and reply.role == "worker"
    price = json.load(open("tasks/llm/prices.json"))["models"][backend.model]
    assert reply.cost_usd == pytest.approx((1000 * price["input"] + 2000 * price["output"]) / 1e6)
    assert len(stub.requests) == 1 and sleeps == []
    assert backend.prompt_of(stub.requests[0]) == "say hello"
    assert "be brief" in json.dumps(stub.requests[0]["body"])
    assert client.usage()["by_role"]["worker"]["calls"] == 1


def test_429_with_retry_after_seconds_is_honoured(backend, stub):
    stub.plan = [backend.error(429, {"Retry-After": "7"}), backend.ok("done")]
    client, sleeps = make_client(backend, stub)
    assert client.complete("worker", "x").text == "done"
    assert len(stub.requests) == 2
    assert sleeps == [7.0]
    assert client.usage()["retries"] == 1


def test_retry_after_as_http_date_is_honoured(backend, stub):
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    stub.plan = [backend.error(503, {"Retry-After": when}), backend.ok("done")]
    client, sleeps = make_client(backend, stub)
    assert client.complete("worker", "x").text == "done"
    assert len(sleeps) == 1 and 17.0 <= sleeps[0] <= 20.0


def test_server_errors_are_retried_with_backoff(backend, stub):
    stub.plan = [backend.error(500), backend.error(502), backend.ok("finally")]
    client, sleeps = make_client(backend, stub)
    assert client.complete("worker", "x").text == "finally"
    assert len(stub.requests) == 3
    assert len(sleeps) == 2 and all(0 < s <= 30 for s in sleeps)


def test_attempts_are_capped(backend, stub):
    stub.plan = [backend.error(500)] * 6
    client, sleeps = make_client(backend, stub, max_attempts=3)
    with pytest.raises(LLMError, match="after 3 attempt"):
        client.complete("worker", "x")
    assert len(stub.requests) == 3 and len(sleeps) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(backend, stub, status):
    stub.plan = [backend.error(status), backend.ok("never served")]
    client, sleeps = make_client(backend, stub)
    with pytest.raises(LLMError, match=f"HTTP {status}"):
        client.complete("worker", "x")
    assert len(stub.requests) == 1 and sleeps == []


def test_401_message_says_which_key(backend, stub):
    stub.plan = [backend.error(401)]
    client, _ = make_client(backend, stub)
    key_var = "GEMINI_API_KEY" if backend.name == "gemini" else "OPENAI_API_KEY"
    with pytest.raises(LLMError, match=key_var):
        client.complete("worker", "x")


def test_silent_server_times_out_and_is_retried(backend, stub):
    stub.plan = [{"mode": "silent"}, {"mode": "silent"}]
    client, sleeps = make_client(backend, stub, max_attempts=2)
    with pytest.raises(LLMError, match="(?i)timed? ?out"):
        client.complete("worker", "x")
    assert len(stub.requests) == 2 and len(sleeps) == 1


def test_trickling_server_is_cut_off_by_the_wall_clock(backend, stub):
    stub.plan = [{"mode": "trickle"}, backend.ok("after the trickle")]
    client, sleeps = make_client(backend, stub)
    assert client.complete("worker", "x").text == "after the trickle"
    assert len(stub.requests) == 2 and len(sleeps) == 1


def test_truncated_answer_is_flagged(backend, stub):
    stub.plan = [backend.ok("def f(:", finish=backend.truncated_reason)]
    client, _ = make_client(backend, stub)
    reply = client.complete("worker", "write code", max_tokens=3)
    assert reply.truncated is True and reply.text == "def f(:"


SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}


def test_schema_is_passed_to_the_backend_and_reply_validated(backend, stub):
    stub.plan = [backend.ok('```json\n{"score": 3}\n```')]
    client, _ = make_client(backend, stub)
    reply = client.complete("reviewer", "rate it", schema=SCHEMA)
    assert reply.data == {"score": 3}
    body = json.dumps(stub.requests[0]["body"])
    assert '"score"' in body and ("responseJsonSchema" in body or "json_schema" in body)


def test_malformed_json_gets_one_repair_call(backend, stub):
    stub.plan = [backend.ok('{"score": '), backend.ok('{"score": 4}')]
    client, _ = make_client(backend, stub)
    reply = client.complete("reviewer", "rate it", schema=SCHEMA)
    assert reply.data == {"score": 4} and len(stub.requests) == 2
    repair_prompt = backend.prompt_of(stub.requests[1])
    assert "rate it" in repair_prompt and "not valid JSON" in repair_prompt
    assert client.usage()["calls"] == 2


def test_twice_malformed_json_is_an_error(backend, stub):
    stub.plan = [backend.ok("no json here"), backend.ok('{"score": "high"}')]
    client, _ = make_client(backend, stub)
    with pytest.raises(LLMError, match="even after one repair"):
        client.complete("reviewer", "rate it", schema=SCHEMA)
    assert len(stub.requests) == 2


def test_gemini3_models_ask_for_low_thinking(stub):
    backend = GeminiBackend()
    stub.plan = [backend.ok("ok")]
    client = LLMClient(backend.make(stub.url, model="gemini-3.8-flash"), timeout=TEST_TIMEOUT_S)
    client.complete("worker", "x")
    assert stub.requests[0]["path"].endswith("/models/gemini-3.8-flash:generateContent")
    thinking = stub.requests[0]["body"]["generationConfig"]["thinkingConfig"]
    # the SDK sends the proto field name; the API's JSON accepts both spellings
    assert thinking.get("thinkingLevel", thinking.get("thinking_level")) == "LOW"


def test_gemini_retry_delay_in_error_body_is_honoured(stub):
    backend = GeminiBackend()
    rate_limited = {"status": 429, "body": {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]}}}
    stub.plan = [rate_limited, backend.ok("ok")]
    client, sleeps = make_client(backend, stub)
    client.complete("worker", "x")
    assert sleeps == [12.0]


def test_openai_falls_back_when_json_schema_is_rejected_and_remembers(stub):
    backend = OpenAIBackend()
    rejected = {"status": 400, "body": {"error": {"message": "response_format json_schema is not supported"}}}
    stub.plan = [rejected, backend.ok('{"score": 1}'), backend.ok('{"score": 2}')]
    client, sleeps = make_client(backend, stub)
    assert client.complete("reviewer", "a", schema=SCHEMA).data == {"score": 1}
    assert client.complete("reviewer", "b", schema=SCHEMA).data == {"score": 2}
    formats = [r["body"].get("response_format", {}).get("type") for r in stub.requests]
    assert formats == ["json_schema", "json_object", "json_object"]
    assert "JSON schema" in stub.requests[1]["body"]["messages"][0]["content"]
    assert sleeps == []


def test_openai_switches_to_max_completion_tokens_when_asked(stub):
    backend = OpenAIBackend()
    rejected = {"status": 400, "body": {"error": {
        "message": "Unsupported parameter: 'max_tokens'. Use 'max_completion_tokens' instead."}}}
    stub.plan = [rejected, backend.ok("ok")]
    client, _ = make_client(backend, stub)
    client.complete("worker", "x", max_tokens=77)
    assert stub.requests[1]["body"]["max_completion_tokens"] == 77
    assert "max_tokens" not in stub.requests[1]["body"]


def test_openai_base_url_alone_needs_no_key(stub, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", stub.url + "/v1")
    backend = OpenAIBackend()
    stub.plan = [backend.ok("local server says hi")]
    client = LLMClient(OpenAIProvider("qwen2.5-coder:7b", timeout=TEST_TIMEOUT_S), timeout=TEST_TIMEOUT_S)
    assert client.complete("worker", "x").text == "local server says hi"
    assert client.describe() == "openai:qwen2.5-coder:7b"


def test_unknown_remote_model_costs_nothing_and_warns_once(stub, caplog):
    backend = OpenAIBackend()
    stub.plan = [backend.ok("a", model="my-own-model"), backend.ok("b", model="my-own-model")]
    client = LLMClient(OpenAIProvider("my-own-model", api_key="k", base_url=stub.url + "/v1"),
                       timeout=TEST_TIMEOUT_S)
    with caplog.at_level("WARNING", logger="tasks.llm"):
        costs = [client.complete("worker", "x").cost_usd for _ in range(2)]
    assert costs == [0.0, 0.0]
    assert sum("no price for model 'my-own-model'" in r.getMessage() for r in caplog.records) == 1


def test_connection_refused_is_retried_then_reported(backend):
    server = StubServer()
    url = server.url
    server.close()  # nothing listens on the port any more
    sleeps: list[float] = []
    client = LLMClient(backend.make(url), timeout=TEST_TIMEOUT_S, sleep=sleeps.append, max_attempts=2)
    with pytest.raises(LLMError, match="after 2 attempt"):
        client.complete("worker", "x")
    assert len(sleeps) == 1
