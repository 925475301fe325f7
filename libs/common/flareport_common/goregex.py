"""Whether a regular expression compiles in Go's ``regexp`` (RE2 syntax), the dialect cloudflared and Cloudflare
match an ingress rule's ``path`` with.

Python's ``re`` is the wrong judge both ways: it accepts lookarounds (``(?=``), backreferences (``\\1``),
possessive quantifiers (``a++``) and ``\\Z``, which RE2 refuses, and refuses ``\\pL``, ``\\z`` and ``(?<name>…)``,
which RE2 accepts. The check uses Google's RE2 (the ``google-re2`` binding) and adds the one place where Go's
parser is stricter than the C++ library: ``\\C`` (any byte) is refused by Go.
"""

from __future__ import annotations

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the C++ library would otherwise print every refusal to stderr


def _has_any_byte_escape(pattern: str) -> bool:
    escaped = False
    for char in pattern:
        if escaped:
            if char == "C":
                return True
            escaped = False
        elif char == "\\":
            escaped = True
    return False


def go_regex_error(pattern: str) -> str | None:
    """None when Go's ``regexp.Compile`` accepts ``pattern``, else RE2's reason (``invalid perl operator: (?=``)."""
    if _has_any_byte_escape(pattern):
        return "invalid escape sequence: \\C"
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    return None
