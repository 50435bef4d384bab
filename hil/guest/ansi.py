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
_CONTROLS = str.maketrans("", "", "\r\x00\x07\x08")  # str.translate deletes them about 5x faster than re.sub
_RARE_CONTROLS = ("\x00", "\x07", "\x08")
_MAX_HELD = 256


class AnsiStripper:
    """Feed decoded text in any chunking; get the same plain text as stripping it all at once."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        escape = text.rfind("\x1b", max(0, len(text) - _MAX_HELD))
        tail = _INCOMPLETE_TAIL.search(text, escape) if escape >= 0 else None
        if tail and tail.start() < len(text):
            self._held = text[tail.start() :]
            text = text[: tail.start()]
        if "\x1b" in text:
            text = _SEQUENCE.sub("", text)
        return _drop_controls(text)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held.translate(_CONTROLS)


def _drop_controls(text: str) -> str:
    """Carriage returns go by str.replace (faster than translate); the rare others only when present."""
    text = text.replace("\r", "")
    if any(control in text for control in _RARE_CONTROLS):
        text = text.translate(_CONTROLS)
    return text


def strip_ansi(text: str) -> str:
    """One-shot form of AnsiStripper for complete text."""
    stripper = AnsiStripper()
    return stripper.feed(text) + stripper.flush()
