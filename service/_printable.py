"""Text made safe for one log line: what a client or the guest wrote cannot end or forge a line.

A leaf: the access line (`_logs`), the guest's own log lines (`_hostfuncs`) and SIGHUP's
messages use it, whatever layer they are in.
"""

from __future__ import annotations

# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators.
_UNPRINTABLE = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


def printable(text: str) -> str:
    """`text` with every character that could end or forge a log line escaped (\\n as \\x0a)."""
    return text.translate(_UNPRINTABLE) if not text.isprintable() else text
