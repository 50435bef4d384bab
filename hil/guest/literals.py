"""The literals every match of a regular expression must contain: a cheap gate before the regex runs.

`str.find` scans text about ten times faster than a regex search whose pattern starts with `^` or an
alternation (the regex engine then tries every position). A pattern's required literals come from the
stdlib's own parse of it; when none of them occurs in the text, the pattern cannot match there and its
search can be skipped. The gate is sound, not complete: a pattern it knows nothing about always runs.
"""

from __future__ import annotations

import re

try:  # Python >= 3.11 keeps the parser here; older versions have the same module under its old name
    from re import _constants as sre_constants
    from re import _parser as sre_parser
except ImportError:  # pragma: no cover
    import sre_constants  # type: ignore[no-redef]
    import sre_parse as sre_parser  # type: ignore[no-redef]

Literals = tuple[str, ...]

_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
_REPEATS |= {getattr(sre_constants, "POSSESSIVE_REPEAT", sre_constants.MAX_REPEAT)}
_IGNORECASE = sre_constants.SRE_FLAG_IGNORECASE


def required_literals(pattern: re.Pattern[str]) -> Literals | None:
    """Strings of which every match of `pattern` contains at least one, or None when none is known."""
    if not isinstance(pattern.pattern, str) or pattern.flags & re.IGNORECASE:
        return None
    try:
        parsed = sre_parser.parse(pattern.pattern, pattern.flags)
    except (re.error, RecursionError):
        return None
    if parsed.state.flags & _IGNORECASE:
        return None
    return _of_sequence(list(parsed))


def _score(literals: Literals) -> tuple[int, int]:
    """Longer literals pass fewer texts; fewer of them cost fewer scans."""
    return min(len(literal) for literal in literals), -len(literals)


def _of_sequence(items: list[tuple[object, object]]) -> Literals | None:
    """The best requirement of a sequence: a run of adjacent literal characters, or one of its parts'."""
    best: Literals | None = None
    run: list[str] = []
    for op, argument in [*items, (None, None)]:
        if op is sre_constants.LITERAL:
            run.append(chr(argument))  # type: ignore[arg-type]
            continue
        found = [("".join(run),)] if run else []
        run = []
        found.append(_of_item(op, argument))
        for candidate in found:
            if candidate and (best is None or _score(candidate) > _score(best)):
                best = candidate
    return best


def _of_item(op: object, argument: object) -> Literals | None:
    """What one parsed element requires: groups and repeats of at least one pass their content's on,
    an alternation the union of its branches' (when every branch requires something)."""
    if op is sre_constants.SUBPATTERN:
        _group, add_flags, _del_flags, content = argument  # type: ignore[misc]
        return None if add_flags & _IGNORECASE else _of_sequence(list(content))
    if op in _REPEATS:
        minimum, _maximum, content = argument  # type: ignore[misc]
        return _of_sequence(list(content)) if minimum >= 1 else None
    if op is getattr(sre_constants, "ATOMIC_GROUP", None):
        return _of_sequence(list(argument))  # type: ignore[call-overload]
    if op is sre_constants.BRANCH:
        _, branches = argument  # type: ignore[misc]
        each = [_of_sequence(list(branch)) for branch in branches]
        if all(each):
            return tuple(dict.fromkeys(literal for literals in each for literal in literals))  # type: ignore[union-attr]
    return None
