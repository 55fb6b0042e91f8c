"""Baseline support bot: find the article sharing the most words with the question, answer with its first sentence."""
import re

STOPWORDS = {"the", "and", "for", "can", "how", "what", "our", "you", "your", "are", "was", "with", "this",
             "that", "have", "does", "from", "get", "any", "there", "would", "about", "into", "when"}


def words(text):
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in STOPWORDS}


def answer(question, kb):
    asked = words(question)
    best = max(kb, key=lambda article: len(asked & words(article["title"] + " " + article["body"])))
    return re.split(r"(?<=[.!?])\s+", best["body"])[0]
