from hil.guest.ansi import AnsiStripper, strip_ansi

SAMPLE = "a\x1b[1mredox login:\x1b[0m b\x1b[6n c\x1b]0;title\x07d\r\nline\x1b(Bx\x1b[38;5;196mred\x1b[m"


def test_strips_csi_osc_and_charset_sequences() -> None:
    assert strip_ansi(SAMPLE) == "aredox login: b cd\nlinexred"


def test_any_split_gives_the_same_text() -> None:
    whole = strip_ansi(SAMPLE)
    for cut in range(len(SAMPLE) + 1):
        stripper = AnsiStripper()
        assert stripper.feed(SAMPLE[:cut]) + stripper.feed(SAMPLE[cut:]) + stripper.flush() == whole


def test_byte_by_byte_feeding() -> None:
    stripper = AnsiStripper()
    assert "".join(stripper.feed(ch) for ch in SAMPLE) + stripper.flush() == strip_ansi(SAMPLE)


def test_lone_escape_at_end_is_held_then_released() -> None:
    stripper = AnsiStripper()
    assert stripper.feed("abc\x1b") == "abc"
    assert stripper.feed("[0mdef") == "def"
