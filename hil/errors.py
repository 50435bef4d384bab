"""Errors that map onto hil's verdicts and exit codes.

A user mistake (bad option, bad file) is a UsageError; a host problem (QEMU missing, image absent, download
failed) is an InfraError. Both carry a message meant to be printed as is, without a traceback.
"""


class HilError(Exception):
    """Base of every error hil reports to the user without a traceback."""

    exit_code = 3


class UsageError(HilError):
    """The user asked for something that cannot work as given (exit code 2)."""

    exit_code = 2


class InfraError(HilError):
    """The host, QEMU or an image failed; not the guest's fault (verdict `infra`, exit code 3)."""

    exit_code = 3


class QemuLaunchError(InfraError):
    """QEMU refused to start; carries the argv and what QEMU printed on stderr."""

    def __init__(self, message: str, argv: list[str], stderr: str) -> None:
        self.argv = argv
        self.stderr = stderr
        detail = stderr.strip() or "(QEMU printed nothing on stderr)"
        super().__init__(f"{message}\n  argv: {' '.join(argv)}\n  QEMU said: {detail}")
