"""Console matching pieces (hil/guest/literals.py, matching.py): the literal gate is sound (a pattern it
skips cannot match), the gated searcher finds what pexpect's own finds, and a match straddling two reads
over a real socket is found with the same before/after as pexpect gives."""

from __future__ import annotations

import io
import random
import re
import socket

import pexpect
import pexpect.fdpexpect
import pytest
from pexpect.expect import searcher_re

from hil.guest.literals import required_literals
from hil.guest.matching import GatedSearcher, LazyBefore, TailExpecter, TextChunks


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("Kernel panic - not syncing", ("Kernel panic - not syncing",)),
        (r"Oops: \d+", ("Oops: ",)),
        (r"^HIL-END-(\d+)$", ("HIL-END-",)),
        (r"(?:page fault|general protection) at", ("page fault", "general protection")),  # longer than " at"
        (r"(page fault|GPF) x", ("page fault", "GPF")),
        (r"\d+ ms", (" ms",)),
        (r"(?i)panic", None),  # case-insensitive: no literal is required as written
        (r"a*b?", None),
        (r"x{0,3}", None),
    ],
)
def test_required_literals(pattern: str, expected: tuple[str, ...] | None) -> None:
    literals = required_literals(re.compile(pattern, re.MULTILINE))
    if expected is None or len(expected) > 1:
        assert literals == expected
    else:  # one of the runs is chosen; it must be in every match
        assert literals is not None and len(literals) == 1 and literals[0] in pattern.replace("\\", "")


def test_the_gate_never_skips_a_pattern_that_matches() -> None:
    rng = random.Random(7)
    patterns = [r"ab+c", r"(x|yz)q", r"^k\d{2}$", r"(?:foo)?bar", r"[ab]cd(e|f)g", r"o{2,}p", r"\bend\b"]
    alphabet = "abcdefgkopqxyz0123 \nfoobar"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for pattern in patterns:
            compiled = re.compile(pattern, re.MULTILINE)
            literals = required_literals(compiled)
            if compiled.search(text) and literals is not None:
                assert any(literal in text for literal in literals), (pattern, text, literals)


def test_gated_searcher_agrees_with_pexpects() -> None:
    rng = random.Random(3)
    patterns = [re.compile(p, re.MULTILINE) for p in (r"^ok \d+", r"panic|BUG", r"(?i)oops", r"x+y")]
    for _ in range(2000):
        text = "".join(rng.choice(["ok 1\n", "panic", "BUG", "OOPS", "xxy", "zz", "\n", "o"]) for _ in range(8))
        window = rng.choice([None, 4, 20])
        ours, theirs = GatedSearcher(patterns), searcher_re(patterns)
        found, expected = ours.search(text, len(text), window), theirs.search(text, len(text), window)
        assert found == expected, (text, window)
        if found >= 0:
            assert (ours.start, ours.end) == (theirs.start, theirs.end)


def test_text_chunks_behave_as_stringio_for_what_pexpect_does() -> None:
    chunks, reference = TextChunks(), io.StringIO()
    for piece in ("abc", "", "defg", "h" * 50):
        assert chunks.write(piece) == reference.write(piece)
        assert chunks.tell() == reference.tell()
    assert chunks.getvalue() == reference.getvalue()
    assert chunks.prefix(5) == reference.getvalue()[:5]
    chunks.seek(2), reference.seek(2)
    assert chunks.read() == reference.read()
    chunks.seek(1), reference.seek(1)
    chunks.write("XY"), reference.write("XY")  # an overwrite keeps StringIO's meaning
    assert chunks.getvalue() == reference.getvalue()


class _Spawn(LazyBefore, pexpect.fdpexpect.fdspawn):
    def __init__(self, fd: int) -> None:
        super().__init__(fd, encoding="utf-8")
        self.buffer_type = TextChunks
        self._buffer = TextChunks()
        self._before = TextChunks()

    def expect_tail(self, patterns: list[re.Pattern[str]], timeout: float, lookback: int) -> int:
        searcher = GatedSearcher([*patterns, pexpect.TIMEOUT])
        return TailExpecter(self, searcher, None, lookback).expect_loop(timeout)


def test_a_match_across_two_reads_and_the_text_before_it() -> None:
    """Over a real socket pair: the marker arrives split between two sends, after a lot of text; the
    expecter finds it, `before` holds everything before it, and what follows is kept for the next wait."""
    reader, writer = socket.socketpair()
    with reader, writer:
        spawn = _Spawn(reader.fileno())
        filler = "line of output\n" * 5000
        writer.sendall((filler + "MARK").encode())
        assert spawn.expect_tail([re.compile("MARKER-42")], 0.3, 64) == 1  # not yet: a timeout
        writer.sendall(b"ER-42 rest\nnext ")
        assert spawn.expect_tail([re.compile(r"MARKER-(\d+)")], 5, 64) == 0
        assert spawn.match.group(1) == "42"
        assert spawn.before == filler
        writer.sendall(b"NEXT\n")
        assert spawn.expect_tail([re.compile(r"next NEXT")], 5, 64) == 0
        assert spawn.before == " rest\n"
