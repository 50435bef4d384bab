"""Triage's pure logic: register dumps, symbols, classification, crash parsers and signatures (no QEMU)."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from hil.triage.classify import USER_FUNCTION, classify, locate, normalize_function
from hil.triage.parsers import parse_crash
from hil.triage.registers import VcpuRegisters, parse_info_registers
from hil.triage.symbols import SymbolTable, demangle

# `info registers -a` of the reference guest idling (QEMU 7.2, TCG), FPU and vector lines trimmed.
LINUX_IDLE_REGISTERS = """
CPU#0
RAX=000000000001ad40 RBX=0000000000000000 RCX=ffff888005b438d0 RDX=4000000000000000
RSI=0000000000000000 RDI=00000000000198a4 RBP=ffffffff82a1aa40 RSP=ffffffff82a03e98
R8 =ffffffffffc6d438 R9 =000000003148b178 R10=00000000fffffffb R11=0000000000000000
R12=0000000000000000 R13=0000000000000000 R14=ffffffff82a1a110 R15=0000000000000000
RIP=ffffffff81a592eb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
ES =0000 0000000000000000 00000000 00000000
CS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]
SS =0018 0000000000000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
GDT=     fffffe0000001000 0000007f
IDT=     fffffe0000000000 00000fff
CR0=80050033 CR2=000000002ca258a8 CR3=00000000050bc000 CR4=00750ef0
EFER=0000000000000d01

CPU#1
RAX=000000000001ad40 RBX=0000000000000000 RCX=ffffc900005ac000 RDX=4000000000000000
RSI=0000000000000001 RDI=000000000001272c RBP=ffff888004a7a100 RSP=ffffc9000009bed8
R8 =fffffffffff7a1ed R9 =000000003148b178 R10=00000000fffffffb R11=0000000000000000
R12=0000000000000001 R13=0000000000000000 R14=0000000000000000 R15=0000000000000000
RIP=ffffffff81a592eb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
CS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]
CR0=80050033 CR2=000000000042ee70 CR3=0000000002a10000 CR4=00750ee0
"""

# A Redox kernel running its bootstrap in user mode (CPU 0) while CPU 1 was never started (32-bit form).
REDOX_SPIN_REGISTERS = """
CPU#0
RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000001100 RDX=0000000000000000
RIP=0000000000001100 RFL=00000202 [-------] CPL=3 II=0 A20=1 SMM=0 HLT=0
CS =002b 0000000000000000 00000000 0020fa00 DPL=3 CS64 [-R-]
CR0=80010011 CR2=0000000000001000 CR3=000000007fc50000 CR4=00350ab0

CPU#1
EAX=000f49f6 EBX=00000000 ECX=000002ff EDX=00000001
ESI=00000000 EDI=00000000 EBP=00000000 ESP=00006c5c
EIP=000fd09a EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=1
CS =0008 00000000 ffffffff 00cf9b00 DPL=0 CS32 [-RA]
CR0=00000011 CR2=00000000 CR3=00000000 CR4=00000000
"""

KALLSYMS = """\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81a59180 T default_idle
ffffffff81a59190 t mwait_idle
ffffffff81a592e0 t native_safe_halt
ffffffff81a59300 t cpu_idle_poll.isra.0
ffffffff82ba9e20 D acpi_idle_driver
ffffffffc0002000 t nvme_irq\t[nvme]
"""


# --- registers --------------------------------------------------------------------------------------------------


def test_every_vcpu_block_is_parsed_with_halt_state_and_privilege() -> None:
    cpus = parse_info_registers(LINUX_IDLE_REGISTERS)
    assert [c.cpu for c in cpus] == [0, 1]
    first = cpus[0]
    assert (first.rip, first.rsp, first.rflags) == (0xFFFFFFFF81A592EB, 0xFFFFFFFF82A03E98, 0x246)
    assert (first.cr3, first.cpl, first.halted, first.long_mode, first.cs) == (0x50BC000, 0, True, True, 0x10)


def test_a_vcpu_in_32_bit_form_and_one_in_user_mode() -> None:
    user, parked = parse_info_registers(REDOX_SPIN_REGISTERS)
    assert user.user_mode and not user.halted and user.rip == 0x1100 and user.cs == 0x2B
    assert not parked.long_mode and parked.halted and parked.rip == 0xFD09A and parked.rsp == 0x6C5C


def test_single_cpu_output_without_header() -> None:
    (only,) = parse_info_registers("RIP=ffffffff81000010 RFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0\n", 3)
    assert only.cpu == 3 and only.rip == 0xFFFFFFFF81000010


# --- symbols ----------------------------------------------------------------------------------------------------


def test_kallsyms_text_symbols_and_lookup() -> None:
    table = SymbolTable.from_kallsyms(KALLSYMS)
    assert str(table.lookup(0xFFFFFFFF81A592EB)) == "native_safe_halt+0xb"
    assert str(table.lookup(0xFFFFFFFF81A59180)) == "default_idle+0x0"
    assert table.lookup(0xFFFFFFFFC0002010).symbol == "nvme_irq [nvme]"
    assert table.lookup(0x1000).symbol is None  # below every text symbol
    assert all(s.name != "acpi_idle_driver" for s in table.symbols)  # data is not a function


@pytest.mark.parametrize(
    ("mangled", "readable"),
    [
        ("_ZN6kernel13run_userspace17h3a4173edea3eb72bE", "kernel::run_userspace"),
        (
            "_ZN104_$LT$alloc..collections..btree..set..Iter$LT$T$GT$$u20$as$u20$core..iter..traits..iterator"
            "..Iterator$GT$4next17ha32b560c19c06090E",
            "<alloc::collections::btree::set::Iter<T> as core::iter::traits::iterator::Iterator>::next",
        ),
        ("_ZN4core3ptr13drop_in_place17h0000000000000000E", "core::ptr::drop_in_place"),
        ("kstart", "kstart"),
        ("_ZN3foo", "_ZN3foo"),  # truncated: left alone
    ],
)
def test_rust_legacy_demangling(mangled: str, readable: str) -> None:
    assert demangle(mangled) == readable


@pytest.fixture(scope="module")
def tiny_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (scripts/bootstrap installs it)")
    folder = tmp_path_factory.mktemp("tiny-elf")
    source = folder / "tiny.c"
    source.write_text(
        textwrap.dedent(
            """
            int known_function(int x) { int y = x * 3; for (int i = 0; i < x; i++) y ^= i; return y; }
            int rust_like(int x) __asm__("_ZN6kernel5kmain17h0123456789abcdefE");
            int rust_like(int x) { return known_function(x) + 1; }
            int main(int argc, char **argv) { (void)argv; return rust_like(argc); }
            """
        )
    )
    binary = folder / "tiny"
    subprocess.run(["gcc", "-O0", "-no-pie", "-o", str(binary), str(source)], check=True)
    return binary


def _nm_address(binary: Path, name: str) -> int:
    output = subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=True).stdout
    return next(int(line.split()[0], 16) for line in output.splitlines() if line.endswith(" " + name))


def test_elf_symbols_give_function_and_offset(tiny_elf: Path) -> None:
    table = SymbolTable.from_elf(tiny_elf)
    assert table is not None
    known = _nm_address(tiny_elf, "known_function")
    assert str(table.lookup(known + 5)) == "known_function+0x5"
    rust = _nm_address(tiny_elf, "_ZN6kernel5kmain17h0123456789abcdefE")
    assert table.lookup(rust + 1).symbol == "kernel::kmain"


def test_an_elf_without_a_symbol_table_gives_none(tiny_elf: Path, tmp_path: Path) -> None:
    stripped = tmp_path / "stripped"
    subprocess.run(["strip", "-o", str(stripped), str(tiny_elf)], check=True)
    assert SymbolTable.from_elf(stripped) is None
    assert SymbolTable.from_elf(tmp_path / "missing") is None


# --- classification ---------------------------------------------------------------------------------------------


def _regs(cpu: int, rip: int, *, halted: bool = False, cpl: int = 0, cr3: int = 0x1000) -> VcpuRegisters:
    return VcpuRegisters(cpu, rip, 0, 0x246, cr3, cpl, halted, True)


TABLE = SymbolTable.from_kallsyms(
    "ffffffff81000000 T spin_on_lock\nffffffff81000100 T do_work_a\nffffffff81000200 T do_work_b\n"
    "ffffffff81000300 T do_work_c\nffffffff81000400 T native_safe_halt\nffffffff81000500 T timer_interrupt\n"
)


def _samples(cpu: int, rips: list[int], **kwargs: object) -> list:
    return [locate(_regs(cpu, rip, **kwargs), TABLE) for rip in rips]  # type: ignore[arg-type]


def test_all_halted_is_deadlock_idle() -> None:
    result = classify(
        {0: _samples(0, [0xFFFFFFFF81000401] * 5, halted=True), 1: _samples(1, [0xFFFFFFFF81000401] * 5, halted=True)}
    )
    assert result.kind == "deadlock/idle" and result.spinning == []


def test_idle_loop_symbols_count_as_idle_even_when_not_halted() -> None:
    rips = [0xFFFFFFFF81000401] * 4 + [0xFFFFFFFF81000501]  # mostly the idle function, once a timer tick
    result = classify({0: _samples(0, rips)})
    assert result.kind == "deadlock/idle"


def test_one_vcpu_stuck_in_a_function_is_livelock_named_by_it() -> None:
    spinning = [0xFFFFFFFF81000010, 0xFFFFFFFF81000020, 0xFFFFFFFF81000010, 0xFFFFFFFF81000501, 0xFFFFFFFF81000030]
    result = classify({0: _samples(0, [0xFFFFFFFF81000401] * 5, halted=True), 1: _samples(1, spinning)})
    assert result.kind == "livelock" and result.spinning == ["spin_on_lock"]
    assert result.cpus[1].state == "spinning" and result.cpus[0].state == "idle"


def test_interrupt_entries_do_not_outvote_a_user_spin() -> None:
    # Seen on Redox under TCG: a user-mode `jmp $` sampled half the time at the PIT handler's first byte.
    pit_entry, user = 0xFFFFFFFF81000500, 0x1100
    rips = [pit_entry, user, pit_entry, user, pit_entry, pit_entry, user, user, user, pit_entry]
    samples = [locate(_regs(0, rip, cpl=0 if rip == pit_entry else 3), TABLE) for rip in rips]
    assert samples[0].at_entry and samples[0].function == "timer_interrupt"
    assert classify({0: samples}).spinning == [USER_FUNCTION]
    unsymbolized = [locate(_regs(0, rip, cpl=0 if rip == pit_entry else 3), None) for rip in rips]
    assert classify({0: unsymbolized}).spinning == [USER_FUNCTION]  # a tie goes to user mode


def test_running_through_different_functions_is_running_but_silent() -> None:
    rips = [0xFFFFFFFF81000110, 0xFFFFFFFF81000210, 0xFFFFFFFF81000310, 0xFFFFFFFF81000120, 0xFFFFFFFF81000220]
    result = classify({0: _samples(0, rips)})
    assert result.kind == "running-but-silent"


def test_user_mode_spin_is_livelock_in_user() -> None:
    rips = [0x52C38C, 0x52B463, 0x45516B, 0x42EDE9, 0x5253C9]
    result = classify({0: _samples(0, rips, cpl=3), 1: _samples(1, [0xFFFFFFFF81000401] * 5, halted=True)})
    assert result.kind == "livelock" and result.spinning == [USER_FUNCTION]


def test_without_symbols_the_page_stands_in_for_the_function() -> None:
    samples = [locate(_regs(0, 0xFFFFFFFF81234010 + i), None) for i in range(5)]
    result = classify({0: samples})
    assert result.kind == "livelock" and result.spinning == ["?0xffffffff81234000"]


def test_no_samples_is_unknown() -> None:
    assert classify({}).kind == "unknown"


def test_compiler_suffixes_do_not_change_the_function() -> None:
    assert normalize_function("cpu_idle_poll.isra.0") == "cpu_idle_poll"
    assert normalize_function("__handle_sysrq.cold") == "__handle_sysrq"
    assert normalize_function("nvme_irq [nvme]") == "nvme_irq"


# --- crash parsers ----------------------------------------------------------------------------------------------

# Seen on this machine: a Redox kernel (package build of 2025-07-10) booting an initfs whose entry is `ud2`.
REDOX_INVALID_OPCODE = """\
kernel::syscall::process:INFO -- Bootstrap entry point: 1100


Invalid opcode fault
RFLAG: 0000000000000202
CS:    000000000000002b
RIP:   0000000000001100
RSP:   0000000000000000
SS:    0000000000000023
FSBASE  0000000000000000
GSBASE  0000000000000000
KGSBASE ffff80007ffd8000
RAX:   0000000000000000
RCX:   0000000000001100
R11:   0000000000000200
R15:   0000000000000000
  FP ffff80007fc4ff00: PC ffffffff80072346
    FFFFFFFF80072260+00E6
    kernel::arch::x86_64::interrupt::exception::invalid_opcode::inner
  FP ffff80007fc4ff50: PC ffffffff80001faa
    FFFFFFFF80001F7C+002E
    kernel::arch::x86_64::interrupt::exception::invalid_opcode
  0000000000000000: GUARD PAGE
kernel::context::signal:INFO -- UNHANDLED EXCEPTION, CPU #0, PID 0, NAME [bootstrap], CONTEXT 0xffffff7f80100e50
"""

# The lead's sample (older kernel): no START+OFFSET line under the frame.
REDOX_SHORT = """\
Invalid opcode fault
RIP:   0000000000001100
  FP ffff80007fc5ff00: PC ffffffff80072346
    kernel::arch::x86_64::interrupt::exception::invalid_opcode
kernel::context::signal:INFO -- UNHANDLED EXCEPTION, CPU #0, PID 0, NAME [bootstrap], CONTEXT 0xffffff7f80100e50
"""

# A kernel-mode page fault in the format of the kernel's exception handler (values made up).
REDOX_KERNEL_PAGE_FAULT = """\
Page fault: 0000000000000018 PRESENT | WR
RFLAG: 0000000000010246
CS:    0000000000000008
RIP:   ffffffff8003c51a
RSP:   ffff80007fc4fd80
  FP ffff80007fc4fcf0: PC ffffffff80072a1f
    FFFFFFFF800727C0+025F
    kernel::arch::x86_64::interrupt::exception::page::inner
  FP ffff80007fc4fd70: PC ffffffff8003c51a
    FFFFFFFF8003C4A0+007A
    kernel::scheme::user::UserInner::read
  FP ffff80007fc4fe00: PC ffffffff8004a100
    FFFFFFFF8004A000+0100
    kernel::syscall::fs::file_op_generic
  0000000000000000: GUARD PAGE
kernel::context::signal:INFO -- UNHANDLED EXCEPTION, CPU #1, PID 7, NAME [nvmed], CONTEXT 0xffffff7f80101230
"""

REDOX_PANIC = """\
KERNEL PANIC: panicked at src/context/switch.rs:142:17:
context switch with a held lock
  FP ffff80007fc4fd10: PC ffffffff8006f0c1
    FFFFFFFF8006F000+00C1
    kernel::panic::stack_trace
  FP ffff80007fc4fd60: PC ffffffff8006f3a2
    FFFFFFFF8006F300+00A2
    rust_begin_unwind
  FP ffff80007fc4fdb0: PC ffffffff80085401
    FFFFFFFF80085190+0271
    kernel::context::switch::switch
  0000000000000000: GUARD PAGE
CPU 1, CID 0xffffff7f80100e50
NAME: [init], DEBUG ID: 3
HALT
"""

# Captured from the reference guest (Linux 6.1) after `echo c > /proc/sysrq-trigger`, trimmed; the doubled
# letters and brackets are as the panic-time UART printed them.
LINUX_SYSRQ_PANIC = """\
[    8.365986] sysrq: Trigger a crash
[    8.367409] Kernel panic - not syncing: sysrq triggered crash
[    8.368641] CPU: 1 PID: 174 Comm: sh Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2
[    8.369364] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[    8.369364] Caall Trace:
[    8.369364]  <TASK>
[    8.369364]  dump_stack_lvl+0x44/0x5c
[    8.369364]  panic+0x118/0x2f4
[    8.369364]  ? _printk+0x68/0x83
[    8.369364]  sysrq_handle_crash+0x16/0x20
[    8.369364]  __handle_sysrq.cold+0x44/0x11c
[    8.369364]  write_sysrq_trigger+0x24/0x40
[    8.369364]]  ? enqueue_entity+0x195/0x4f0
[    8.369364]  proc_reg_write+0x56/0xa0
[    8.369364]  entry_SYSCALL_64_after_hwframe+0x6e/0xd8
[    8.369364] RIP: 0033:0x47b7a0
[    8.369364] RSP: 002b:00007fffd5699e78 EFLAGS: 00000202 ORIG_RAX: 0000000000000001
[    8.369364] RAX: ffffffffffffffda RBX: 0000000000000001 RCX: 000000000047b7a0
[    8.369364]  </TASK>
"""

# The x86-64 oops format of Linux 6.1 (a NULL write in a module; values made up).
LINUX_NULL_OOPS = """\
[   42.101010] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   42.101200] #PF: supervisor write access in kernel mode
[   42.101300] #PF: error_code(0x0002) - not-present page
[   42.101400] PGD 0 P4D 0
[   42.101500] Oops: 0002 [#1] PREEMPT SMP NOPTI
[   42.101600] CPU: 0 PID: 211 Comm: kworker/0:2 Not tainted 6.1.0-28-amd64 #1  Debian 6.1.119-1
[   42.101700] Workqueue: events nvme_reset_work [nvme]
[   42.101800] RIP: 0010:nvme_setup_io_queues+0x1a3/0x3c0 [nvme]
[   42.101900] Code: 48 8b 45 c8 48 89 58 08 <48> 89 50 08 e9 4f ff ff ff
[   42.102000] RSP: 0018:ffffc900006bfd80 EFLAGS: 00010246
[   42.102100] RAX: 0000000000000000 RBX: ffff888004a1c000 RCX: 0000000000000000
[   42.102200] RDX: 0000000000000001 RSI: 0000000000000000 RDI: ffff888004a1c0a0
[   42.102300] Call Trace:
[   42.102400]  <TASK>
[   42.102500]  ? __die_body.cold+0x1a/0x1f
[   42.102600]  ? page_fault_oops+0xd2/0x2b0
[   42.102700]  ? exc_page_fault+0x70/0x170
[   42.102800]  ? asm_exc_page_fault+0x22/0x30
[   42.102900]  nvme_setup_io_queues+0x1a3/0x3c0 [nvme]
[   42.103000]  nvme_reset_work+0x3e2/0xe60 [nvme]
[   42.103100]  process_one_work+0x1c7/0x380
[   42.103200]  worker_thread+0x4d/0x380
[   42.103300]  kthread+0xd7/0x100
[   42.103400]  ret_from_fork+0x1f/0x30
[   42.103500]  </TASK>
[   42.103600] Modules linked in: nvme nvme_core e1000
[   42.103700] CR2: 0000000000000008
[   42.103800] ---[ end trace 0000000000000000 ]---
[   42.103900] Kernel panic - not syncing: Fatal exception
"""


def test_redox_exception_dump_is_structured() -> None:
    report = parse_crash(REDOX_INVALID_OPCODE)
    assert report is not None and report.format == "redox" and report.kind == "exception"
    assert report.title == "Invalid opcode fault" and report.mode == "user"
    assert report.registers["RIP"] == "0000000000001100" and report.registers["KGSBASE"] == "ffff80007ffd8000"
    assert report.backtrace == [
        "kernel::arch::x86_64::interrupt::exception::invalid_opcode::inner",
        "kernel::arch::x86_64::interrupt::exception::invalid_opcode",
    ]
    assert (report.cpu, report.pid, report.process) == (0, 0, "bootstrap")
    # The handler frames say nothing: a user-mode fault is placed by its process.
    assert report.signature == "crash:Invalid opcode fault:user:bootstrap"


def test_redox_short_dump_gives_the_same_signature() -> None:
    short, full = parse_crash(REDOX_SHORT), parse_crash(REDOX_INVALID_OPCODE)
    assert short is not None and full is not None
    assert short.backtrace == ["kernel::arch::x86_64::interrupt::exception::invalid_opcode"]
    assert short.signature == full.signature


def test_redox_kernel_fault_is_placed_by_its_first_frame_outside_the_handler() -> None:
    report = parse_crash(REDOX_KERNEL_PAGE_FAULT)
    assert report is not None and report.mode == "kernel" and report.title == "Page fault"
    assert report.frame == "kernel::scheme::user::UserInner::read"
    assert report.signature == "crash:Page fault:kernel::scheme::user::UserInner::read"
    assert (report.cpu, report.pid, report.process) == (1, 7, "nvmed")


def test_redox_kernel_panic() -> None:
    report = parse_crash(REDOX_PANIC, ["redox"])
    assert report is not None and report.kind == "kernel-panic"
    assert report.title == "KERNEL PANIC at src/context/switch.rs"
    assert "held lock" in report.message
    assert report.frame == "kernel::context::switch::switch"
    assert (report.cpu, report.process, report.pid) == (1, "init", 3)  # the base name, as for exceptions


def test_linux_panic_skips_reporting_frames_and_stale_ones() -> None:
    report = parse_crash(LINUX_SYSRQ_PANIC)
    assert report is not None and report.format == "linux" and report.kind == "panic"
    assert report.mode == "kernel" and "RIP" not in report.registers  # the RIP after the trace is user mode's
    assert report.title == "Kernel panic - not syncing: sysrq triggered crash"
    assert report.backtrace[:4] == ["dump_stack_lvl", "panic", "sysrq_handle_crash", "__handle_sysrq"]
    assert "_printk" not in report.backtrace and "enqueue_entity" not in report.backtrace  # "?" frames
    assert (report.cpu, report.pid, report.process) == (1, 174, "sh")
    assert report.signature == "crash:Kernel panic - not syncing: sysrq triggered crash:sysrq_handle_crash"


def test_linux_oops_title_registers_and_frame() -> None:
    report = parse_crash(LINUX_NULL_OOPS)
    assert report is not None and report.kind == "bug" and report.mode == "kernel"
    assert report.title == "BUG: kernel NULL pointer dereference"  # the oops, not the panic after it
    assert report.registers["RIP"] == "nvme_setup_io_queues+0x1a3/0x3c0"
    assert report.registers["RBX"] == "ffff888004a1c000" and report.registers["RSP"] == "ffffc900006bfd80"
    assert report.backtrace[0] == "nvme_setup_io_queues" and "page_fault_oops" not in report.backtrace
    assert report.signature == "crash:BUG: kernel NULL pointer dereference:nvme_setup_io_queues"


@pytest.mark.parametrize(
    ("line", "title"),
    [
        ("BUG: unable to handle page fault for address: ffffc90000d6b000", "BUG: unable to handle page fault"),
        (
            "general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] SMP NOPTI",
            "general protection fault",
        ),
        ("invalid opcode: 0000 [#1] PREEMPT SMP NOPTI", "invalid opcode"),
        ("kernel BUG at mm/slub.c:385!", "kernel BUG at mm/slub.c"),
        ("watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [dd:180]", "BUG: soft lockup"),
        ("INFO: task sh:1 blocked for more than 120 seconds.", "INFO: task hung"),
        ("BUG: scheduling while atomic: swapper/0/0/0x00000002", "BUG: scheduling while atomic"),
        ("Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b", None),
    ],
)
def test_linux_titles_lose_what_changes_between_boots(line: str, title: str | None) -> None:
    first = parse_crash(f"[    1.000000] {line}\n")
    second = parse_crash(f"[  999.123456] {line.replace('23s', '45s').replace('180', '181')}\n")
    assert first is not None and second is not None
    if title is not None:
        assert first.title == title
    assert first.signature == second.signature  # stable across boots


def test_the_earliest_crash_wins_across_formats() -> None:
    report = parse_crash(LINUX_NULL_OOPS + REDOX_INVALID_OPCODE)
    assert report is not None and report.format == "linux"
    report = parse_crash(REDOX_INVALID_OPCODE + LINUX_NULL_OOPS)
    assert report is not None and report.format == "redox"


def test_a_fault_name_without_a_register_dump_is_not_a_crash() -> None:
    assert parse_crash("echo Double fault\nDouble fault\nhil# \n") is None
    assert parse_crash("nothing to see\n") is None


def test_escape_sequences_do_not_hide_a_crash() -> None:
    coloured = "\x1b[1;31mInvalid opcode fault\x1b[0m\r\nRIP:   0000000000001100\r\n"
    report = parse_crash(coloured)
    assert report is not None and report.title == "Invalid opcode fault"


def test_a_kernel_busy_in_two_address_spaces_is_a_user_loop() -> None:
    """A yield loop: the scheduler runs for the program and for the idle context in turn (two CR3s)."""
    rips = [0xFFFFFFFF81000110, 0xFFFFFFFF81000110, 0xFFFFFFFF81000210, 0xFFFFFFFF81000110, 0xFFFFFFFF81000120]
    samples = [locate(_regs(0, rip, cr3=0x101000 if i % 2 else 0x7FC50000), TABLE) for i, rip in enumerate(rips)]
    result = classify({0: samples})
    assert result.kind == "user-loop" and result.cpus[0].address_spaces == ["0x101000", "0x7fc50000"]
    one_space = [locate(_regs(0, rip, cr3=0x101000), TABLE) for rip in rips]
    assert classify({0: one_space}).kind == "livelock"  # the same samples in one context: a kernel spin


# --- Linux logs as users save them: the same oops behind every prefix ----------------------------------

OOPS_LINES = [
    "BUG: kernel NULL pointer dereference, address: 0000000000000010",
    "Oops: 0000 [#1] PREEMPT SMP NOPTI",
    "CPU: 1 PID: 77 Comm: insmod Not tainted 6.1.0 #1",
    "RIP: 0010:mutex_lock+0x19/0x30",
    "RSP: 0018:ffffc90000abfd40 EFLAGS: 00010246",
    "Call Trace:",
    " <TASK>",
    " ? __die+0x20/0x70",
    " foo_init+0x10/0x20 [foo]",
    " do_one_initcall+0x56/0x230",
    " </TASK>",
]
LINE_PREFIXES = {
    "console": "",
    "printk time": "[   12.345678] ",
    "printk level": "<4>[   12.345678] ",
    "level and a space (i915 CI)": "<4> [12.345678] ",
    "caller id": "[   12.345678][  T123] ",
    "dmesg -H": "[  +0.000003] ",
    "dmesg -T": "[Mon Jan  2 10:00:01 2024] ",
    "syslog": "Jan  2 10:00:01 myhost kernel: [   12.345678] ",
    "syslog, spaces collapsed": "Jan 2 10:00:01 myhost kernel: [ 12.345678] ",
    "journal, ISO time": "2024-01-02T10:00:01.123456+00:00 myhost kernel: ",
    "quoted in a mail": "> [   12.345678] ",
    "quoted twice": "> > ",
}


@pytest.mark.parametrize("prefix", list(LINE_PREFIXES.values()), ids=list(LINE_PREFIXES))
def test_the_same_oops_behind_any_line_prefix_gives_the_same_report(prefix: str) -> None:
    report = parse_crash("\n".join(prefix + line for line in OOPS_LINES), ["linux"])
    assert report is not None
    assert report.signature == "crash:BUG: kernel NULL pointer dereference:mutex_lock"
    assert (report.process, report.pid, report.cpu, report.mode) == ("insmod", 77, 1, "kernel")
    assert report.backtrace == ["foo_init", "do_one_initcall"]
    assert report.summary == "BUG: kernel NULL pointer dereference in insmod at mutex_lock+0x19/0x30"


def test_frames_of_older_kernels_and_of_decode_stacktrace() -> None:
    old = """BUG: unable to handle kernel NULL pointer dereference at 0000000000000008
CPU: 0 PID: 1234 Comm: kworker/0:1 Tainted: G  O 4.4.0 #1
RIP: 0010:[<ffffffffa01c2d3e>]  [<ffffffffa01c2d3e>] foo_bar+0x1e/0x40 [foo]
Call Trace:
 [<ffffffff8109a1f5>] process_one_work+0x155/0x440
 [<ffffffff8109a1f5>] ? worker_thread+0x155/0x440
 [<ffffffff8109a1f6>] kthread+0xd8/0xf0
"""
    report = parse_crash(old, ["linux"])
    assert report.title == "BUG: unable to handle kernel NULL pointer dereference"
    assert report.frame == "foo_bar" and report.backtrace == ["process_one_work", "kthread"]
    decoded = """general protection fault, probably for non-canonical address 0xdffffc0000000003: 0000 [#1] SMP KASAN
CPU: 0 UID: 0 PID: 5509 Comm: syz.3.5509 Not tainted 6.19.0-rc1 #0
RIP: 0010:ovl_iterate+0x22/0x90 fs/overlayfs/readdir.c:812
Call Trace:
 <TASK>
 ovl_iterate_merged fs/overlayfs/readdir.c:790 [inline]
 wrap_directory_iterator+0x9b/0xe0 fs/readdir.c:65
 __x64_sys_getdents64+0x1c/0x30 (fs/readdir.c:400)
 </TASK>
"""
    report = parse_crash(decoded, ["linux"])
    assert report.frame == "ovl_iterate"
    assert report.backtrace == ["ovl_iterate_merged", "wrap_directory_iterator", "__x64_sys_getdents64"]


def test_a_stall_is_placed_where_the_interrupt_caught_the_cpu() -> None:
    """An RCU stall's trace is the timer interrupt's; the code it interrupted is the RIP after </IRQ>."""
    stall = """rcu: INFO: rcu_sched self-detected stall on CPU
CPU: 8 PID: 3470 Comm: kfdtest Tainted: G           O      5.12.0 #1
Call Trace:
 <IRQ>
 dump_stack+0x64/0x7c
 rcu_dump_cpu_stacks+0xc5/0xf5
 rcu_sched_clock_irq.cold.97+0x112/0x38c
 update_process_times+0x8c/0xc0
 </IRQ>
 asm_sysvec_apic_timer_interrupt+0x12/0x20
RIP: 0010:clear_page_rep+0x7/0x10
Code: e8 fe 7c 51 00
RSP: 0018:ffffc9000f58f818 EFLAGS: 00000246
 prep_new_page+0x81/0xc0
"""
    report = parse_crash(stall, ["linux"])
    assert report.title == "INFO: rcu detected stall" and report.frame == "clear_page_rep"
    assert report.backtrace[-2:] == ["clear_page_rep", "prep_new_page"]
