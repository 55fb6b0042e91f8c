"""Benchmark of the embedded local model (tasks/llm/local.py).

    python benchmarks/llm_local.py [--model 0.5b|1.5b] [--rounds 3]

Measures, on one machine:
1. generation speed through LocalProvider against raw llama-cpp-python on the same prompt (ratio ~1
   means the provider adds no overhead);
2. time to a 1-token answer for a long prompt seen for the first time, repeated exactly, and repeated
   with a different final question (llama.cpp reuses the KV cache of a shared prefix);
3. output tokens and time of an edit-style answer (SEARCH/REPLACE) against a whole-file answer for the
   same change to a ~60-line file, both for reference answers written by hand and for the model's own.
The machine may be shared: the load average is printed, and each timing is the median of --rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.code_edits import CandidateRejected, candidate_from_reply, describe_edit_format  # noqa: E402
from tasks.llm import local  # noqa: E402
from tasks.llm.local import LocalProvider  # noqa: E402

GENERATION_TOKENS = 128
SEED = 7
GENERATION_PROMPT = ("Write a Python module implementing a binary search tree with insert, delete, search "
                     "and in-order traversal. Include docstrings.")
EDIT_ANSWER_LIMIT = 900   # output tokens allowed for each of the edit / whole-file answers

SAMPLE_FILE = '''\
"""A small inventory of items with prices and quantities."""
from dataclasses import dataclass, field


@dataclass
class Item:
    name: str
    price: float
    quantity: int = 0


@dataclass
class Inventory:
    items: dict = field(default_factory=dict)

    def add(self, name, price, quantity=1):
        """Add `quantity` units of an item, creating it if needed."""
        if name in self.items:
            self.items[name].quantity += quantity
        else:
            self.items[name] = Item(name, price, quantity)

    def remove(self, name, quantity=1):
        """Remove units of an item; drop the item when none are left."""
        item = self.items[name]
        item.quantity -= quantity
        if item.quantity <= 0:
            del self.items[name]

    def total_value(self):
        """The value of everything in stock."""
        return sum(item.price * item.quantity for item in self.items.values())

    def average_price(self):
        """The mean price over the distinct items."""
        prices = [item.price for item in self.items.values()]
        return sum(prices) / len(prices)

    def cheapest(self):
        """The name of the cheapest item, or None when empty."""
        if not self.items:
            return None
        return min(self.items.values(), key=lambda item: item.price).name

    def restock(self, threshold, amount):
        """Add `amount` units to every item below `threshold` units."""
        for item in self.items.values():
            if item.quantity < threshold:
                item.quantity += amount

    def report(self):
        """One line per item, sorted by name."""
        lines = []
        for name in sorted(self.items):
            item = self.items[name]
            lines.append(f"{name}: {item.quantity} x {item.price:.2f}")
        return "\\n".join(lines)


def load(rows):
    """Build an inventory from (name, price, quantity) rows."""
    inventory = Inventory()
    for name, price, quantity in rows:
        inventory.add(name, price, quantity)
    return inventory
'''
CHANGE = "average_price raises ZeroDivisionError on an empty inventory; make it return 0.0 instead."
OLD_LINES = '''\
        prices = [item.price for item in self.items.values()]
        return sum(prices) / len(prices)
'''
NEW_LINES = '''\
        prices = [item.price for item in self.items.values()]
        if not prices:
            return 0.0
        return sum(prices) / len(prices)
'''
REFERENCE_EDIT = f"<<<<<<< SEARCH\n{OLD_LINES}=======\n{NEW_LINES}>>>>>>> REPLACE\n"
REFERENCE_WHOLE = "```python\n" + SAMPLE_FILE.replace(OLD_LINES, NEW_LINES) + "```\n"


def timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def measure_generation(provider: LocalProvider, rounds: int) -> dict:
    """Tokens/s of the same greedy answer through the provider and through a second, raw Llama."""
    import llama_cpp
    raw = llama_cpp.Llama(model_path=provider._path, n_ctx=local.N_CTX, n_threads=local.N_THREADS,
                          n_threads_batch=local.N_THREADS, n_batch=local.N_BATCH, verbose=False)
    messages = [{"role": "user", "content": GENERATION_PROMPT}]

    def via_provider():
        reply = provider.generate(GENERATION_PROMPT, role="bench", system=None, max_tokens=GENERATION_TOKENS,
                                  temperature=0.0, seed=SEED, schema=None, timeout=600)
        return reply.tokens_out, reply.text

    def via_raw():
        response = raw.create_chat_completion(messages=messages, max_tokens=GENERATION_TOKENS,
                                              temperature=0.0, seed=SEED)
        return response["usage"]["completion_tokens"], response["choices"][0]["message"]["content"]

    via_provider(), via_raw()   # the first call of each also reads the prompt; later ones reuse it
    speeds = {"provider": [], "raw": []}
    texts = {}
    for _ in range(rounds):     # interleaved, so load from other processes hits both alike
        for label, call in (("provider", via_provider), ("raw", via_raw)):
            (tokens, texts[label]), seconds = timed(call)
            speeds[label].append(tokens / seconds)
    del raw
    provider_speed, raw_speed = statistics.median(speeds["provider"]), statistics.median(speeds["raw"])
    return {"tokens": GENERATION_TOKENS, "provider_tok_s": provider_speed, "raw_tok_s": raw_speed,
            "ratio": provider_speed / raw_speed, "same_text": texts["provider"] == texts["raw"],
            "all_provider_tok_s": speeds["provider"], "all_raw_tok_s": speeds["raw"]}


def long_prompt(session: int, question: str) -> str:
    # the session number goes first so each round starts with a prompt llama.cpp has not seen
    return (f"Session {session}. You are improving the module below.\n\n{describe_edit_format()}\n"
            f"Current file:\n```python\n{SAMPLE_FILE}```\n\nPrevious attempts:\n"
            + "".join(f"- attempt {i}: changed `{name}`, all tests passed except test_{name}_{i}.\n"
                      for i, name in enumerate(["add", "remove", "total_value", "cheapest", "restock",
                                                "report", "load"] * 6))
            + f"\nQuestion: {question}")


def measure_prefix_reuse(provider: LocalProvider, rounds: int) -> dict:
    def one_token(prompt):
        return provider.generate(prompt, role="bench", system="You are a careful Python programmer.",
                                 max_tokens=1, temperature=0.0, seed=SEED, schema=None, timeout=600)

    times = {"first": [], "repeated": [], "new_question": []}
    prompt_tokens = 0
    for session in range(rounds):
        prompt = long_prompt(session, "What is the bug in average_price?")
        reply, seconds = timed(lambda: one_token(prompt))
        prompt_tokens = reply.tokens_in
        times["first"].append(seconds)
        times["repeated"].append(timed(lambda: one_token(prompt))[1])
        other = long_prompt(session, "Which method would you test first, and why?")
        times["new_question"].append(timed(lambda: one_token(other))[1])
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"prompt_tokens": prompt_tokens, **{f"{k}_s": v for k, v in medians.items()},
            "read_tok_s_first": prompt_tokens / medians["first"],
            "speedup_repeated": medians["first"] / medians["repeated"],
            "speedup_new_question": medians["first"] / medians["new_question"]}


def measure_edit_vs_whole(provider: LocalProvider) -> dict:
    llama, _ = local.load_model(provider._path)

    def count(text):
        return len(llama.tokenize(text.encode(), add_bos=False, special=False))

    assert candidate_from_reply(REFERENCE_EDIT, SAMPLE_FILE) == candidate_from_reply(REFERENCE_WHOLE, SAMPLE_FILE)
    base = f"Current file:\n```python\n{SAMPLE_FILE}```\n\nChange: {CHANGE}\n\n"
    prompts = {"edit": base + describe_edit_format(),
               "whole": base + "Reply with the complete new file in one ```python block."}
    expected = SAMPLE_FILE.replace(OLD_LINES, NEW_LINES)
    result = {"reference_edit_tokens": count(REFERENCE_EDIT), "reference_whole_tokens": count(REFERENCE_WHOLE)}
    for style, prompt in prompts.items():
        reply, seconds = timed(lambda: provider.generate(
            prompt, role="bench", system="You are a careful Python programmer.", max_tokens=EDIT_ANSWER_LIMIT,
            temperature=0.0, seed=SEED, schema=None, timeout=600))
        try:
            candidate = candidate_from_reply(reply.text, SAMPLE_FILE, truncated=reply.finish_reason == "length")
            verdict = "exact" if candidate == expected else "accepted"
        except CandidateRejected as exc:
            verdict = f"rejected ({exc.kind})"
        result[f"model_{style}"] = {"tokens_out": reply.tokens_out, "seconds": seconds, "candidate": verdict,
                                    "finish_reason": reply.finish_reason, "text": reply.text}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="0.5b", help="local model name or alias (default 0.5b)")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions per timing (median is reported)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    provider = LocalProvider(args.model)
    (_, _), load_seconds = timed(provider._llama)   # fetch/verify (cached after the first time) + load
    load_before = os.getloadavg()
    results = {"model": provider.model, "cpus": os.cpu_count(), "threads": local.N_THREADS,
               "n_ctx": local.N_CTX, "load_seconds": load_seconds,
               "generation": measure_generation(provider, args.rounds),
               "prefix_reuse": measure_prefix_reuse(provider, args.rounds),
               "edit_vs_whole": measure_edit_vs_whole(provider),
               "loadavg_before_after": [load_before[0], os.getloadavg()[0]]}

    g, p, e = results["generation"], results["prefix_reuse"], results["edit_vs_whole"]
    print(f"model {results['model']}, {results['threads']} threads, n_ctx {results['n_ctx']}, "
          f"load {load_seconds:.1f}s, load average {load_before[0]:.1f} -> {results['loadavg_before_after'][1]:.1f}")
    print(f"{'measure':52} {'value':>12}")
    rows = [
        (f"generation tok/s, LocalProvider ({g['tokens']} tokens)", f"{g['provider_tok_s']:.1f}"),
        ("generation tok/s, raw llama-cpp-python", f"{g['raw_tok_s']:.1f}"),
        ("  ratio provider/raw (same text: %s)" % g["same_text"], f"{g['ratio']:.2f}"),
        (f"1-token answer, {p['prompt_tokens']}-token prompt, first time (s)", f"{p['first_s']:.2f}"),
        ("  same prompt repeated (s)", f"{p['repeated_s']:.2f}"),
        ("  same prefix, new final question (s)", f"{p['new_question_s']:.2f}"),
        ("  prompt reading speed, first time (tok/s)", f"{p['read_tok_s_first']:.0f}"),
        ("reference answer tokens: SEARCH/REPLACE edit", f"{e['reference_edit_tokens']}"),
        ("reference answer tokens: whole file", f"{e['reference_whole_tokens']}"),
    ]
    for style in ("edit", "whole"):
        m = e[f"model_{style}"]
        rows.append((f"model's {style} answer: tokens / seconds / candidate",
                     f"{m['tokens_out']} / {m['seconds']:.1f} / {m['candidate']}"))
    for label, value in rows:
        print(f"{label:52} {value:>12}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
