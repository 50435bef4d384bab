"""Finding the symbols of the kernel a session booted, wherever they are.

In order: a kernel ELF with a symbol table that the guest profile names (`kernel_symbols(options)`, the Redox
kernel); the booted `-kernel` file itself if it has a symbol table; the host cache of kallsyms for that
kernel file; and, when allowed, the running guest's /proc/kallsyms over SSH (then cached if the guest
booted with `nokaslr`, so later runs, even ones that hang before SSH is up, have symbols).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

from hil.triage.symbols import SymbolTable, cached_kallsyms, kallsyms_cache_path, store_kallsyms
from hil.triage.target import TriageTarget

SSH_TIMEOUT = 8.0
# Text symbols only: half the size of the whole file, and all that symbolizing an instruction pointer needs.
KALLSYMS_COMMAND = "cat /proc/cmdline; echo ---hil-kallsyms---; grep ' [TtWw] ' /proc/kallsyms"

log = logging.getLogger(__name__)


def resolve_symbols(session: TriageTarget, *, fetch: bool = True) -> SymbolTable | None:
    """The best symbol table for the session's kernel, or None (addresses then stay bare)."""
    table = _profile_elf(session)
    if table:
        return table
    kernel = session.machine.spec.kernel
    if kernel is None:
        return None
    table = SymbolTable.from_elf(Path(kernel))
    if table:
        return table
    return cached_kallsyms(kernel) or (_fetch_kallsyms(session, Path(kernel)) if fetch else None)


def warm_symbol_cache(session: TriageTarget, *, background: bool = False) -> bool:
    """After a good boot: fetch kallsyms once per kernel file, so a later hang has symbols.

    True if the cache holds them now (or, with `background`, if a fetch started: it then never delays the
    run, and a guest without SSH costs nothing but a thread waiting for its timeout)."""
    kernel = session.machine.spec.kernel
    if kernel is None or _profile_elf(session) is not None:
        return False
    if kallsyms_cache_path(Path(kernel)).exists():
        return True
    if session.profile.ssh_access(session.options) is None:
        return False
    if background:
        threading.Thread(target=_fetch_kallsyms, args=(session, Path(kernel)), name="hil-kallsyms", daemon=True).start()
        return True
    return _fetch_kallsyms(session, Path(kernel)) is not None


def _profile_elf(session: TriageTarget) -> SymbolTable | None:
    with contextlib.suppress(Exception):  # a profile that cannot find its ELF must not break triage
        path = session.profile.kernel_symbols(session.options)
        return SymbolTable.from_elf(Path(path)) if path else None
    return None


def _fetch_kallsyms(session: TriageTarget, kernel: Path) -> SymbolTable | None:
    text = _ssh_output(session, KALLSYMS_COMMAND)
    if not text or "---hil-kallsyms---" not in text:
        return None
    cmdline, symbols = text.split("---hil-kallsyms---", 1)
    if "nokaslr" in cmdline.split():
        store_kallsyms(kernel, symbols)
    table = SymbolTable.from_kallsyms(symbols, "guest /proc/kallsyms over SSH")
    return table if len(table) else None


def _ssh_output(session: TriageTarget, command: str) -> str | None:
    access = session.profile.ssh_access(session.options)
    if access is None or session.ssh_port is None:
        return None
    from hil.guest.ssh import GuestSsh  # paramiko only when symbols are fetched

    try:
        ssh = GuestSsh.connect(session.ssh_port, access, SSH_TIMEOUT, attempt_timeout=SSH_TIMEOUT)
    except Exception as err:  # no network, no sshd yet, a hung guest: symbols are a bonus
        log.debug("no kallsyms over SSH: %s", err)
        return None
    try:
        return ssh.run(command, timeout=SSH_TIMEOUT * 4).stdout
    except Exception as err:
        log.debug("no kallsyms over SSH: %s", err)
        return None
    finally:
        ssh.close()
