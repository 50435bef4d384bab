"""Bad input is exit 2 and one line, found before anything boots: a fuzz of broken scenario files, and the
command-line values and paths users get wrong.

Every broken file comes from a mutation that is broken by construction (an unknown key, a wrong type, a
pattern that does not compile, a step order that cannot work, bytes that are not text, ...), applied to
the built-in scenarios, plus random bytes. `hil run FILE` must answer each with exit status 2 and a single
line naming the file and the fix: no traceback, no run folder, and no QEMU started (QEMU's launcher is
armed to fail the test if it is ever reached).
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hil.cli import main as hil_main
from hil.qemu.process import QemuProcess
from hil.scenario import builtin_dir

Mutation = Callable[[str, random.Random], str | bytes]


def _new_step(lines: str) -> Mutation:
    """Append a step of one's own (appending to the last step could repeat one of its keys)."""
    return lambda text, rng: text.rstrip("\n") + "\n\n[[steps]]\n" + lines + "\n"


def _append(lines: str) -> Mutation:
    return lambda text, rng: text.rstrip("\n") + "\n\n" + lines + "\n"


def _top_key(line: str) -> Mutation:
    """Set a top-level key, replacing the file's own line for it."""
    key = line.split("=")[0].strip()

    def mutate(text: str, rng: random.Random) -> str:
        kept = [old for old in text.splitlines() if not re.match(rf"{re.escape(key)}\s*=", old)]
        return line + "\n" + "\n".join(kept) + "\n"

    return mutate


def _machine_key(line: str) -> Mutation:
    """Set a [machine] key (every built-in scenario has that table), replacing its own line."""
    key = line.split("=")[0].strip()

    def mutate(text: str, rng: random.Random) -> str:
        text = re.sub(rf"^{key}\s*=.*\n", "", text, flags=re.MULTILINE)
        return text.replace("[machine]\n", f"[machine]\n{line}\n", 1)

    return mutate


def _table_to_value(table: str, line: str) -> Mutation:
    """Drop a table (or array of tables) and give its key a plain value instead."""

    def mutate(text: str, rng: random.Random) -> str:
        pattern = rf"^\[+{table}\]+\n(?:(?!\[).*\n?)*"
        return line + "\n" + re.sub(pattern, "", text, flags=re.MULTILINE)

    return mutate


def _cut_inside_a_string(text: str, rng: random.Random) -> str:
    quotes = [m.end() for m in re.finditer(r'= "', text)]
    return text[: rng.choice(quotes)]


def _random_bytes(text: str, rng: random.Random) -> bytes:
    return b"\xff" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))


def _binary_inside(text: str, rng: random.Random) -> bytes:
    data = bytearray(text.encode())
    data[rng.randrange(len(data))] = rng.choice([0x80, 0xC3, 0xFE, 0xFF])
    return bytes(data)


NVME_HOTPLUG = '[[devices]]\nkind = "nvme"\nid = "hp0"\nplug = "hotplug"\n'
# Each mutation, and the words its message must hold (so the check meant for it is the one that fired).
MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "unknown top-level key": (_top_key("colour = 1"), "'colour': is not a known key"),
    "unknown step key": (_new_step('run = "true"\nfrobnicate = true'), "].frobnicate': is not a known key"),
    "two step kinds": (_new_step('console = "x"\nrun = "true"'), "needs exactly one step kind"),
    "no step kind": (_new_step("timeout = 5"), "needs exactly one step kind"),
    "negative timeout": (_new_step('run = "true"\ntimeout = -5'), "].timeout': is -5"),
    "zero timeout": (_new_step('run = "true"\ntimeout = 0'), "].timeout': is 0"),
    "nan timeout": (_new_step('run = "true"\ntimeout = nan'), "].timeout': is nan"),
    "infinite timeout": (_new_step('run = "true"\ntimeout = inf'), "].timeout': is inf"),
    "timeout as text": (_new_step('run = "true"\ntimeout = "30"'), "].timeout': is '30' (text)"),
    "step name not text": (_new_step('run = "true"\nname = 42'), "].name': is 42 (a whole number)"),
    "regex that does not compile": (_new_step('run = "true"\nexpect_output = "(["'), "not a regular expression"),
    "console regex that does not compile": (_new_step('console = "a(b"'), "not a regular expression"),
    "impossible exit status": (_new_step('run = "true"\nexpect_status = 300'), "no command can exit with"),
    "unknown guest": (_top_key('guest = "plan9"'), "'guest': is 'plan9', not a known guest"),
    "guest not text": (_top_key("guest = 3"), "'guest': is 3 (a whole number)"),
    "tags not names": (_top_key("tags = [1, 2]"), "'tags': holds 1"),
    "smp as text": (_machine_key('smp = "two"'), "'machine.smp': is 'two' (text)"),
    "smp zero": (_machine_key("smp = 0"), "'machine.smp': is 0"),
    "smp too many": (_machine_key("smp = 100000"), "'machine.smp': is 100000"),
    "memory negative": (_machine_key("memory = -1"), "'machine.memory': is -1"),
    "snapshot not a flag": (_machine_key('snapshot = "yes"'), "'machine.snapshot': is 'yes'"),
    "unknown machine key": (_machine_key("cpus = 2"), "'machine.cpus': is not a known key"),
    "timeout factor nan": (_append("[budgets]\ntimeout_factor = nan"), "'budgets.timeout_factor': is nan"),
    "timeout factor negative": (_append("[budgets]\ntimeout_factor = -2"), "'budgets.timeout_factor': is -2"),
    "steps not tables": (_table_to_value("steps", "steps = 5"), "'steps': must be an array of tables"),
    "machine not a table": (_table_to_value("machine", "machine = 3"), "'machine': must be a table"),
    "no steps left": (lambda text, rng: text.split("[[steps]]")[0], "the scenario has no steps"),
    "unknown device kind": (_append('[[devices]]\nkind = "floppy"\nid = "f0"'), "].kind': is 'floppy'"),
    "device id not ASCII": (_append('[[devices]]\nkind = "nvme"\nid = "nvmé0"'), "].id': is 'nvmé0'"),
    "device id empty": (_append('[[devices]]\nkind = "nvme"\nid = ""'), "].id': is ''"),
    "disk of zero MiB": (_append('[[devices]]\nkind = "nvme"\nid = "z0"\nsize_mib = 0'), r"size_mib': is 0"),
    "disk far too big": (_append('[[devices]]\nkind = "nvme"\nid = "z0"\nsize_mib = 9999999'), "from 1 to 4096"),
    "forwards not a list": (_append('[[devices]]\nkind = "e1000"\nid = "e9"\nforwards = 7'), "forwards': is 7"),
    "forward port out of range": (_append('[[devices]]\nkind = "e1000"\nid = "e9"\nforwards = ["tcp:0"]'),
                                  "forwards': has 'tcp:0'"),
    "usb device without controller": (_append('[[devices]]\nkind = "usb-kbd"\nid = "k0"'), "controller': is missing"),
    "usb device on no controller": (_append('[[devices]]\nkind = "usb-kbd"\nid = "k0"\ncontroller = "x9"'),
                                    "names 'x9', not an xhci device"),
    "duplicate device id": (_append('[[devices]]\nkind = "nvme"\nid = "d0"\n[[devices]]\nkind = "nvme"\nid = "d0"'),
                            "id 'd0' is used twice"),
    "hotplug of a boot device": (_append('[[devices]]\nkind = "nvme"\nid = "hp0"\n[[steps]]\nhotplug = "hp0"'),
                                 "is present from boot"),
    "hotplug twice": (_append(NVME_HOTPLUG + '[[steps]]\nhotplug = "hp0"\n[[steps]]\nhotplug = "hp0"'),
                      "added by an earlier step"),
    "unplug before hotplug": (_append(NVME_HOTPLUG + '[[steps]]\nunplug = "hp0"'), "not plugged in at this point"),
    "hotplug of a controller": (_append('[[devices]]\nkind = "xhci"\nid = "x7"\n[[steps]]\nunplug = "x7"'),
                                "cannot be (un)plugged"),
    "step names an unknown device": (_new_step('check_device = "ghost0"'), "names unknown device 'ghost0'"),
    "unforwarded host port": (_new_step('host = "send"\nguest_port = 7999'), "tcp port 7999 is not forwarded"),
    "port out of range": (_new_step('host = "send"\nguest_port = 70000'), "guest_port': is 70000"),
    "unknown host mode": (_new_step('host = "sideways"\nguest_port = 22'), "host': is 'sideways'"),
    "unknown probe": (_new_step('probe = "fio"'), "probe': is 'fio'"),
    "allow_fail not names": (_new_step('console_probe = "initfs"\nallow_fail = [1]'), "allow_fail': holds 1"),
    "cut inside a string": (_cut_inside_a_string, "not valid TOML"),
    "duplicate key": (lambda text, rng: re.sub(r"^(name = .*)$", r'\1\nname = "again"', text, count=1, flags=re.M),
                      "not valid TOML"),
    "unclosed table header": (_top_key("[machine"), "not valid TOML"),
    "not UTF-8 inside": (_binary_inside, "not a text file"),
    "random bytes": (_random_bytes, "not a text file"),
    "empty file": (lambda text, rng: "", "the file is empty"),
    "only comments": (lambda text, rng: "# nothing here\n# at all\n", "the file is empty"),
    "only whitespace": (lambda text, rng: "   \n\t\n", "the file is empty"),
}


def broken_scenarios(folder: Path, count: int, seed: int = 1) -> list[tuple[str, Path]]:
    """`count` broken files: every mutation on every built-in scenario, then random picks, then random bytes."""
    rng = random.Random(seed)
    sources = sorted(builtin_dir().glob("*.toml"))
    plans = [(name, source) for name in MUTATIONS for source in sources]
    rng.shuffle(plans)
    files = []
    for index in range(count):
        name, source = plans[index] if index < len(plans) else (rng.choice(list(MUTATIONS)), rng.choice(sources))
        broken = MUTATIONS[name][0](source.read_text(), rng)
        path = folder / f"{index:03d}-{source.stem}.toml"
        path.write_bytes(broken if isinstance(broken, bytes) else broken.encode())
        files.append((name, path))
    return files


@pytest.fixture
def no_qemu(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Arms QEMU's launcher: any start is recorded and fails that run."""
    started: list[list[str]] = []

    def refuse(self: QemuProcess) -> None:
        started.append(self.argv)
        raise AssertionError("QEMU was started for input that should have been refused")

    monkeypatch.setattr(QemuProcess, "start", refuse)
    return started


def test_two_hundred_broken_scenarios_each_give_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_qemu: list[list[str]]
) -> None:
    files = broken_scenarios(tmp_path, 300)
    assert len(MUTATIONS) * len(list(builtin_dir().glob("*.toml"))) >= 200
    problems = []
    for mutation, path in files:
        report_dir = tmp_path / "runs" / path.stem
        code = hil_main(["run", str(path), "--report-dir", str(report_dir)])
        out, err = capsys.readouterr()
        lines = (out + err).strip().splitlines()
        label = f"{mutation} ({path.name})"
        if code != 2 or len(lines) != 1 or str(path) not in lines[0] or "Fix:" not in lines[0]:
            problems.append(f"{label}: exit {code}: {(out + err).strip()[:300]}")
        elif MUTATIONS[mutation][1] not in lines[0]:
            problems.append(f"{label}: another check answered: {lines[0]}")
        if report_dir.exists():
            problems.append(f"{label}: a run folder was made")
    assert not no_qemu
    assert not problems, "\n".join(problems)


def test_the_real_command_line_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    """A few of the same files through a real `hil run` process: what users and CI see."""
    for label, path in broken_scenarios(tmp_path, 12, seed=7):
        done = subprocess.run([sys.executable, "-m", "hil.cli", "run", str(path)], capture_output=True, text=True)
        text = (done.stdout + done.stderr).strip()
        assert done.returncode == 2, f"{label}: {text}"
        assert len(text.splitlines()) == 1 and "Traceback" not in text, f"{label}: {text}"


BAD_OPTIONS = {
    "--timeout-factor nan": ("--timeout-factor", "nan"),
    "--timeout-factor inf": ("--timeout-factor", "inf"),
    "--timeout-factor 0": ("--timeout-factor", "0"),
    "--smp 0": ("--smp", "0"),
    "--smp 1000": ("--smp", "1000"),
    "--smp 1,x": ("--smp", "1,x"),
    "--memory 10": ("--memory", "10"),
    "--memory x": ("--memory", "x"),
    "--retry-infra -1": ("--retry-infra", "-1"),
    "--guest unknown": ("--guest", "plan9"),
    "--accel unknown": ("--accel", "hvf"),
    "--report-dir under /proc": ("--report-dir", "/proc/hil-run"),
    "--junit under /proc": ("--junit", "/proc/hil.xml"),
    "--initrd-overlay missing": ("--initrd-overlay", "/nonexistent/overlay.cpio"),
    "--image missing": ("--image", "/nonexistent/guest"),
    "an option hil does not have": ("--colour",),
}


@pytest.mark.parametrize("option", list(BAD_OPTIONS))
def test_a_bad_option_is_exit_2_and_one_line_before_anything_boots(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_qemu: list[list[str]]
) -> None:
    with pytest.raises(SystemExit) as stopped:  # argparse's own checks end the parse...
        code = hil_main(["run", "boot", *BAD_OPTIONS[option]])
        raise SystemExit(code)  # ...hil's own return their code
    out, err = capsys.readouterr()
    lines = (out + err).strip().splitlines()
    assert stopped.value.code == 2, lines
    assert len(lines) == 1 and BAD_OPTIONS[option][0] in lines[0], lines
    assert not no_qemu


def test_paths_that_are_not_folders_or_files_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_qemu: list[list[str]]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = {
        ("--report-dir", str(a_file)): "is a file, not a folder",
        ("--html", str(a_file)): "is a file, not a folder",
        ("--junit", str(tmp_path)): "is a folder",
    }
    for argv, words in cases.items():
        assert hil_main(["run", "boot", *argv]) == 2
        out = capsys.readouterr().out.strip()
        assert words in out and str(argv[1]) in out and len(out.splitlines()) == 1, out
    assert not no_qemu


def test_a_folder_named_like_a_builtin_scenario_does_not_hide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hil.scenario import load_scenario

    (tmp_path / "boot").mkdir()
    (tmp_path / "gate").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_scenario("boot").source == builtin_dir() / "boot.toml"
    from hil.runset import load_suite

    assert load_suite("gate").name == "gate"


def test_a_broken_suite_names_its_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_qemu: list[list[str]]
) -> None:
    entries = {
        'jobs = "x"\n[[runs]]\nscenario = "boot"\n': "'jobs'",
        'retry_infra = -1\n[[runs]]\nscenario = "boot"\n': "'retry_infra'",
        '[[runs]]\nscenario = "boot"\nguest = "plan9"\n': "'runs[0].guest'",
        '[[runs]]\nscenario = "boot"\nmemory = "lots"\n': "'runs[0].memory'",
        '[[runs]]\nscenario = "boot"\ntimeout_factor = nan\n': "'runs[0].timeout_factor'",
        '[[runs]]\nscenario = "boot"\nmemory = 10\n': "boot[run=1]: memory 10 MiB",
        '[[runs]]\nscenario = "nonexistent.toml"\n': "nonexistent.toml does not exist",
    }
    for index, (text, words) in enumerate(entries.items()):
        suite = tmp_path / f"suite{index}.toml"
        suite.write_text(f'name = "s{index}"\n{text}')
        assert hil_main(["run", "--suite", str(suite)]) == 2, text
        out = capsys.readouterr().out.strip()
        assert words in out and len(out.splitlines()) == 1, out
    assert not no_qemu
