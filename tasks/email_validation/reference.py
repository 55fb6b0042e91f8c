"""The trusted reference for the email_validation task: the arena's referee.

Never copied into a sandbox or shown to a candidate. Written as plain, checkable steps (no regex) so
a reader can confirm it against the rule in prompt.txt line by line; tests/test_email_validation.py
also fuzzes it against an independent regex formulation of the same rule.
"""
from __future__ import annotations

import string

MAX_ADDRESS_LENGTH = 254
MAX_LOCAL_LENGTH = 64
MAX_LABEL_LENGTH = 63
MIN_DOMAIN_LABELS = 2

LETTERS_AND_DIGITS = frozenset(string.ascii_letters + string.digits)
ATOM_CHARACTERS = LETTERS_AND_DIGITS | frozenset("!#$%&'*+-/=?^_`{|}~")
LABEL_CHARACTERS = LETTERS_AND_DIGITS | frozenset("-")
DIGITS = frozenset(string.digits)


def why_invalid(address: str) -> str | None:
    """None when `address` is valid under the task's rule, else the first rule it breaks."""
    if not isinstance(address, str):
        return f"not a string ({type(address).__name__})"
    for position, character in enumerate(address):
        code = ord(character)
        if code > 127:
            return f"non-ASCII character {character!r} at position {position}"
        # 0-31 and 127 are the control characters; 32 is the space. ASCII's other whitespace
        # (tab, newline, ...) is all inside 0-31.
        if code <= 32 or code == 127:
            return f"whitespace or control character {character!r} at position {position}"
    if address.count("@") != 1:
        return f"has {address.count('@')} '@' characters, needs exactly one"
    if len(address) > MAX_ADDRESS_LENGTH:
        return f"address is {len(address)} characters, the limit is {MAX_ADDRESS_LENGTH}"
    local, domain = address.split("@")
    return _why_local_invalid(local) or _why_domain_invalid(domain)


def _why_local_invalid(local: str) -> str | None:
    if not local:
        return "local part is empty"
    if len(local) > MAX_LOCAL_LENGTH:
        return f"local part is {len(local)} characters, the limit is {MAX_LOCAL_LENGTH}"
    if local.startswith("."):
        return "local part starts with a dot"
    if local.endswith("."):
        return "local part ends with a dot"
    if ".." in local:
        return "local part has two dots in a row"
    for character in local:
        if character != "." and character not in ATOM_CHARACTERS:
            return f"local part has disallowed character {character!r}"
    return None


def _why_domain_invalid(domain: str) -> str | None:
    if not domain:
        return "domain is empty"
    if domain.endswith("."):
        return "domain ends with a dot"
    labels = domain.split(".")
    if len(labels) < MIN_DOMAIN_LABELS:
        return f"domain {domain!r} has one label, needs at least {MIN_DOMAIN_LABELS} separated by dots"
    for label in labels:
        if not label:
            return "domain has an empty label (a leading dot or two dots in a row)"
        if len(label) > MAX_LABEL_LENGTH:
            return f"domain label is {len(label)} characters, the limit is {MAX_LABEL_LENGTH}"
        for character in label:
            if character not in LABEL_CHARACTERS:
                return f"domain label {label!r} has disallowed character {character!r}"
        if label.startswith("-") or label.endswith("-"):
            return f"domain label {label!r} starts or ends with a hyphen"
    if all(character in DIGITS for character in labels[-1]):
        return f"last domain label {labels[-1]!r} is all digits"
    return None


def is_valid_email(address: str) -> bool:
    return why_invalid(address) is None
