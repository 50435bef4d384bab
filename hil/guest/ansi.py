"""Stripping terminal escape sequences from a stream that arrives in arbitrary chunks.

Guests colour their logs (Redox's drivers) and line editors query the cursor (busybox ash sends ESC[6n);
matching must see plain text while the raw bytes stay in QEMU's serial log. A sequence split across two
reads is held back until it is complete.
"""

import re

_SEQUENCE = re.compile(
    r"\x1b(?:"
    r"\[[0-?]*[ -/]*[@-~]"  # CSI: ESC [ params intermediates final
    r"|\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: ESC ] ... BEL or ST
    r"|[ -/]*[0-~]"  # two-byte and nF escapes (ESC c, ESC ( B, ...)
    r")"
)
_INCOMPLETE_TAIL = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[ -/]*)\Z")
_CONTROL = re.compile(r"[\r\x00\x07\x08]")
_MAX_HELD = 256


class AnsiStripper:
    """Feed decoded text in any chunking; get the same plain text as stripping it all at once."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        tail = _INCOMPLETE_TAIL.search(text, max(0, len(text) - _MAX_HELD))
        if tail and tail.start() < len(text):
            self._held = text[tail.start() :]
            text = text[: tail.start()]
        return _CONTROL.sub("", _SEQUENCE.sub("", text))

    def flush(self) -> str:
        held, self._held = self._held, ""
        return _CONTROL.sub("", held)


def strip_ansi(text: str) -> str:
    """One-shot form of AnsiStripper for complete text."""
    stripper = AnsiStripper()
    return stripper.feed(text) + stripper.flush()
