"""The initfs probe's host side: the build with gcc, the initfs layout, the ABI table, the register-dump decoder.

None of this needs Redox binaries; the real boot is in test_initfs_probe_boot.py.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from hil.errors import InfraError, UsageError
from hil.image.redox.initfs import bootstrap_entry
from hil.initfs_probe import build, layout, regdump, spec
from hil.initfs_probe.abi import ABIS, DEFAULT_ABI
from hil.probes.ktap import parse_text

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed (apt-get install gcc)")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    return build.build_initfs_probe(tmp_path_factory.mktemp("probe"))


# ---- the build -----------------------------------------------------------------------------------------------


@needs_gcc
def test_build_gives_an_initfs_and_its_elf(built: Path) -> None:
    image = built.read_bytes()
    assert image.startswith(b"RedoxFtw")
    assert built.with_suffix(".elf").read_bytes().startswith(b"\x7fELF")
    assert len(image) % 4096 == 0
    assert "kernel-smoke" in built.name


@needs_gcc
def test_a_second_build_with_the_same_inputs_is_the_same_file(built: Path) -> None:
    before = built.stat().st_ino  # a rebuild writes a new file (a new inode); a hit only marks it used
    again = build.build_initfs_probe(built.parent)
    assert again == built and again.stat().st_ino == before


@needs_gcc
def test_variants_and_overrides_get_their_own_files(built: Path) -> None:
    stress = build.build_initfs_probe(built.parent, "sched-stress")
    short = build.build_initfs_probe(built.parent, "sched-stress", stress_seconds=3, stress_threads=4)
    assert len({built, stress, short}) == 3
    assert "sched-stress" in stress.name


def test_unknown_variant_abi_channel_or_sizes_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="kernel-smoke"):
        build.build_initfs_probe(tmp_path, "nope")
    with pytest.raises(UsageError, match="redox-2025-07"):
        build.build_initfs_probe(tmp_path, abi="redox-1999")
    with pytest.raises(UsageError, match="regdump"):
        build.build_initfs_probe(tmp_path, channel="carrier-pigeon")
    with pytest.raises(UsageError, match="even"):
        build.build_initfs_probe(tmp_path, stress_threads=3)
    with pytest.raises(UsageError, match="stress_seconds"):
        build.build_initfs_probe(tmp_path, stress_seconds=0)


@pytest.fixture
def source_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "src"
    shutil.copytree(build.SOURCE_DIR, copy)
    monkeypatch.setattr(build, "SOURCE_DIR", copy)
    return copy


@needs_gcc
def test_a_compile_error_is_an_infra_error_with_gccs_words(source_copy: Path, tmp_path: Path) -> None:
    probe = source_copy / "probe.c"
    probe.write_text(probe.read_text() + "\nstatic int broken(void) { return undeclared_thing; }\n")
    with pytest.raises(InfraError) as caught:
        build.build_initfs_probe(tmp_path / "out")
    message = str(caught.value)
    assert "building hil-initfs-probe failed" in message
    assert "undeclared_thing" in message and "compiler said" in message
    assert not list((tmp_path / "out").glob("*.initfs")), "no output after a failed build"


def test_missing_gcc_is_an_infra_error_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "COMPILER", "no-such-gcc-here")
    with pytest.raises(InfraError, match="apt-get install gcc"):
        build.build_initfs_probe(tmp_path)


def test_source_digest_follows_the_sources(source_copy: Path) -> None:
    first = build.source_digest()
    assert first == build.source_digest() and len(first) == 64
    (source_copy / "rt.c").write_text((source_copy / "rt.c").read_text() + "\n/* changed */\n")
    assert build.source_digest() != first


# ---- the initfs layout ---------------------------------------------------------------------------------------


def _elf(path: Path) -> ELFFile:
    return ELFFile(io.BytesIO(path.read_bytes()))


@needs_gcc
def test_header_magic_entry_and_size(built: Path) -> None:
    image = built.read_bytes()
    header = layout.parse_header(image)
    elf = _elf(built.with_suffix(".elf"))
    assert header.magic == b"RedoxFtw"
    assert header.size == len(image) and header.page_size == 4096
    assert header.inode_count == 1 and header.root_inode == 0
    assert struct.unpack_from("<Q", image, 0x1A)[0] == header.entry == elf["e_entry"]
    assert bootstrap_entry(image) == elf.get_section_by_name(".symtab").get_symbol_by_name("_start")[0]["st_value"]
    inode_type, inode_len, _ = layout.INODE.unpack_from(image, header.inode_table)
    assert (inode_type, inode_len) == (2, 0)  # one empty root directory


@needs_gcc
def test_file_offset_x_runs_at_0x1000_plus_x(built: Path) -> None:
    image = built.read_bytes()
    elf = _elf(built.with_suffix(".elf"))
    loads = [seg for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
    assert loads and all(seg["p_vaddr"] >= 0x2000 for seg in loads), "the first page is the header's"
    for seg in loads:
        offset = seg["p_vaddr"] - 0x1000
        assert image[offset : offset + seg["p_filesz"]] == seg.data()
        bss = image[offset + seg["p_filesz"] : offset + seg["p_memsz"]]
        assert bss == bytes(len(bss)), "bss is stored as zeros, inside the mapped file"
        assert offset + seg["p_memsz"] <= len(image)
    text = elf.get_section_by_name(".text")
    assert image[text["sh_addr"] - 0x1000 :][: text["sh_size"]] == text.data()
    entry = bootstrap_entry(image) - 0x1000
    assert image[entry : entry + 3] == b"\x48\x8d\x25", "_start begins with lea ...(%rip), %rsp"


def _link(tmp_path: Path, address: int, body: str = "_start: ud2") -> bytes:
    source = tmp_path / "t.S"
    source.write_text(f'.globl _start\n.text\n{body}\n.section .note.GNU-stack,"",@progbits\n')
    script = tmp_path / "t.ld"
    sections = f"SECTIONS {{ . = {address:#x}; .text : {{ *(.text) }} :image }}"
    script.write_text(f"ENTRY(_start)\nPHDRS {{ image PT_LOAD FLAGS(7); }}\n{sections}\n")
    out = tmp_path / "t.elf"
    argv = ["gcc", "-nostdlib", "-static", "-no-pie", "-T", str(script), "-Wl,--build-id=none", "-o", str(out)]
    subprocess.run([*argv, str(source)], check=True, capture_output=True)
    return out.read_bytes()


@needs_gcc
def test_a_segment_over_the_header_page_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="overlaps the initfs header"):
        layout.initfs_from_elf(_link(tmp_path, 0x1000))


@needs_gcc
def test_a_minimal_elf_at_0x2000_lays_out_at_offset_0x1000(tmp_path: Path) -> None:
    image = layout.initfs_from_elf(_link(tmp_path, 0x2000))
    assert bootstrap_entry(image) == 0x2000 and image[0x1000:0x1002] == b"\x0f\x0b"
    assert len(image) == 0x2000


def test_not_an_elf_is_refused() -> None:
    with pytest.raises(ValueError, match="ELF"):
        layout.initfs_from_elf(b"RedoxFtw, not an ELF file")


# ---- the ABI table -------------------------------------------------------------------------------------------


def test_syscall_numbers_are_redox_syscall_fe32c6b() -> None:
    numbers = ABIS[DEFAULT_ABI].numbers
    # src/number.rs at fe32c6b: class | argument kind | return kind | number
    assert numbers["SYS_OPEN"] == 0x1010_0005  # also seen in a real run: r9 after SYS_OPEN in a fault dump
    assert numbers["SYS_WRITE"] == 0x2100_0004
    assert numbers["SYS_READ"] == 0x2200_0003
    assert numbers["SYS_CLOSE"] == 0x2000_0006
    assert numbers["SYS_DUP"] == 0x2010_0029
    assert numbers["SYS_CALL"] == 0x2300_CA11
    assert numbers["SYS_FMAP"] == 0x2100_0384
    assert numbers["SYS_FUNMAP"] == 0x2000_005C
    assert (numbers["SYS_YIELD"], numbers["SYS_NANOSLEEP"], numbers["SYS_FUTEX"], numbers["SYS_CLOCK_GETTIME"]) == (
        158, 162, 240, 265,
    )  # fmt: skip


def test_c_header_carries_every_number_and_the_errno_names() -> None:
    header = ABIS[DEFAULT_ABI].c_header()
    assert "#define SYS_OPEN 0x10100005UL" in header
    assert "#define O_FSYNC 0x800000UL" in header
    assert "X(ETIMEDOUT)" in header and '#define HIL_ABI_NAME "redox-2025-07"' in header


def test_known_issues_name_real_cases() -> None:
    for abi in ABIS.values():
        assert set(abi.known_issues) <= set(spec.CASES)
        assert abi.verified and abi.compatible


# ---- the register-dump channel -------------------------------------------------------------------------------


def _dump(**regs: int) -> str:
    """A fault dump in the kernel's format (as seen on a real boot), for the given registers."""
    values = dict.fromkeys(regdump.REGISTERS, 0) | regs
    lines = ["Invalid opcode fault", "RFLAG: 0000000000000246", "CS:    000000000000002b", "RIP:   00000000000034da"]
    lines += [f"{name + ':':<7}{values[name]:016x}" for name in ("RAX", "RCX", "RDX", "RDI", "RSI")]
    lines += [f"{name + ':':<7}{values[name]:016x}" for name in ("R8", "R9", "R10", "R11", "RBX", "RBP")]
    lines += [f"{name + ':':<7}{values[name]:016x}" for name in ("R12", "R13", "R14", "R15")]
    lines += [
        "  FP ffff80007fc4ff00: PC ffffffff80072346",
        "kernel::context::signal:INFO -- UNHANDLED EXCEPTION, CPU #0",
    ]
    return "\r\n".join(lines) + "\r\n"


def _probe_regs(**overrides: int) -> dict[str, int]:
    plan = len(spec.CASES)
    regs = dict.fromkeys(regdump.REGISTERS, 0) | {
        "RAX": spec.REGDUMP_MAGIC,
        "RBX": (1 << plan) - 1 & ~0b1_0001_0000 & ~(1 << 12),  # all pass but 5 and 9 (fail), 13 (skip)
        "RCX": 0b1_0001_0000,
        "RDX": 1 << 12,
        "RSI": spec.REGDUMP_LAYOUT << 32 | plan,
        "RDI": 0,
        "RBP": spec.build_id("kernel-smoke", DEFAULT_ABI),
        "R8": 1088,  # syscall_path.clock_gettime_us = 1.088
        "R15": 78342 * 1000,  # sched_stress.rounds, but sched_stress is skipped here: not shown
        "R14": 7000,  # scheme_out_of_order.ooo_completions = 7
    }
    return regs | overrides


def test_decoder_turns_a_synthetic_dump_into_ktap_the_parser_reads() -> None:
    console = "kernel::syscall::process:INFO -- Bootstrap entry point: 2000\r\n" + _dump(**_probe_regs())
    text = regdump.ktap_from_console(console)
    assert text is not None
    report = parse_text(text)
    assert report.errors == [] and report.plan == len(spec.CASES)
    statuses = {case.name: case.status for case in report.cases}
    assert statuses["futex_timeout_cleanup"] == statuses["futex_wake_timeout"] == "fail"
    assert statuses["sched_stress"] == "skip"
    assert sum(status == "pass" for status in statuses.values()) == len(spec.CASES) - 3
    assert report.case("syscall_path").metrics["clock_gettime_us"].raw == "1.088"
    assert report.case("scheme_out_of_order").metrics["ooo_completions"].value == 7
    assert "rounds" not in report.case("sched_stress").metrics
    assert "the build chose this channel" in text


def test_decoder_names_the_console_error_and_leaves_unreported_cases_missing() -> None:
    regs = _probe_regs(RBX=0b11, RCX=0, RDX=0, RDI=(1 << 64) - 2)  # two cases ran; open gave -2
    report = parse_text(regdump.decode(regs))
    assert [case.status for case in report.cases[:2]] == ["pass", "pass"]
    assert all(case.status == "error" for case in report.cases[2:])
    assert "opening /scheme/debug returned -2 (ENOENT)" in regdump.decode(regs)


def test_only_the_last_dump_with_the_magic_counts() -> None:
    unrelated = _dump(RAX=0x4242)
    first = _dump(**_probe_regs(RBX=0))
    last = _dump(**_probe_regs())
    dump = regdump.find_probe_dump(unrelated + first + last)
    assert dump is not None and dump["RBX"] == _probe_regs()["RBX"]
    assert regdump.ktap_from_console(unrelated) is None
    assert regdump.ktap_from_console("no dump at all\n") is None


def test_a_dump_of_another_layout_or_case_list_is_refused() -> None:
    with pytest.raises(regdump.RegdumpError, match="layout"):
        regdump.decode(_probe_regs(RSI=2 << 32 | len(spec.CASES)))
    with pytest.raises(regdump.RegdumpError, match="cases"):
        regdump.decode(_probe_regs(RSI=spec.REGDUMP_LAYOUT << 32 | 3))
    with pytest.raises(regdump.RegdumpError, match="magic"):
        regdump.decode(_probe_regs(RAX=1))
    with pytest.raises(regdump.RegdumpError, match="R12"):
        regdump.decode({name: value for name, value in _probe_regs().items() if name != "R12"})
