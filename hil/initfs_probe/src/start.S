/*
 * Entry points of the initfs probe.
 *
 * The kernel starts the bootstrap context at the initfs header's entry address "in a minimal environment
 * without any stack" (redox-os/kernel caf5fa95 src/syscall/process.rs usermode_bootstrap): only RIP, CS/SS
 * and RFLAGS.IF are set, so the first thing to do is to point RSP at our own stack.
 */
    .section .text.entry, "ax"
    .globl _start
_start:
    lea main_stack_top(%rip), %rsp
    xor %ebp, %ebp
    call probe_main
    ud2                         /* probe_main never returns; a fault here shows where it did */

/*
 * First instruction of every thread. The kernel sets RIP and RSP from what the parent wrote to the new
 * context's "current-addrspace" handle (kernel src/scheme/proc.rs); all other registers are zero. The parent
 * left the thread's argument at the top of its stack.
 */
    .text
    .globl thread_trampoline
thread_trampoline:
    mov (%rsp), %rdi
    and $-16, %rsp
    xor %ebp, %ebp
    call thread_main
    ud2

    .bss
    .balign 16
    .space 65536
main_stack_top:

    .section .note.GNU-stack, "", @progbits
