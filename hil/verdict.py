"""Verdicts and the exit codes they map to (0 pass, 1 fail/crash/hang, 2 usage, 3 infra)."""

from enum import StrEnum


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    CRASH = "crash"
    HANG = "hang"
    INFRA = "infra"

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "infra": 3}.get(self.value, 1)

    @property
    def severity(self) -> int:
        """For combining several runs: the worst verdict wins."""
        return ["pass", "fail", "hang", "crash", "infra"].index(self.value)


USAGE_EXIT_CODE = 2
