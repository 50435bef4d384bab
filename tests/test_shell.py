from hil.guest.shell import ShellDialect, parse_wrapped


def test_echo_of_the_typed_line_never_matches_the_markers() -> None:
    wrapped = ShellDialect().wrap("ls /")
    assert "\n" not in wrapped.line
    assert wrapped.pattern.search(wrapped.line + "\n") is None


def test_output_and_status_are_read_back() -> None:
    wrapped = ShellDialect().wrap("cat f")
    token = wrapped.pattern.pattern[2:14]
    shell_output = f"{wrapped.line}\nHB{token}\nline one\nline two\n\nHE{token}:3\nhil# "
    match = wrapped.pattern.search(shell_output)
    assert match is not None
    assert parse_wrapped(match) == (3, "line one\nline two\n")


def test_output_without_final_newline() -> None:
    wrapped = ShellDialect().wrap("printf x")
    token = wrapped.pattern.pattern[2:14]
    match = wrapped.pattern.search(f"HB{token}\nx\nHE{token}:0\n")
    assert match is not None and parse_wrapped(match) == (0, "x")


def test_each_wrap_uses_a_new_token() -> None:
    shell = ShellDialect()
    assert shell.wrap("true").pattern.pattern != shell.wrap("true").pattern.pattern


def test_comments_and_newlines_cannot_swallow_the_end_marker() -> None:
    wrapped = ShellDialect().wrap("echo a\necho b # comment")
    assert wrapped.line.endswith("$?")
    assert "'echo a\necho b # comment'" in wrapped.line
