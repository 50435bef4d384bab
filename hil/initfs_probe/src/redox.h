/*
 * Raw Redox syscalls for a program with no libc. Numbers and flags come from the generated hil_abi.h (see
 * abi.py); the calling convention is the kernel's: `syscall` with rax = number, rdi, rsi, rdx, r10, r8 =
 * arguments; rax = result, a negative errno on failure; rcx and r11 are clobbered
 * (redox-os/kernel caf5fa95 src/arch/x86_64/interrupt/syscall.rs).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hil_abi.h"

typedef uint64_t u64;
typedef int64_t i64;
typedef uint32_t u32;
typedef uint8_t u8;

static inline long redox_syscall5(u64 n, u64 a, u64 b, u64 c, u64 d, u64 e)
{
    long result;
    register u64 r10 __asm__("r10") = d;
    register u64 r8 __asm__("r8") = e;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return result;
}

/* A result in -4095..-1 is an error; addresses and counts are never that large. */
static inline bool is_err(long result) { return result < 0 && result > -4096; }

/* redox-os/syscall src/data.rs TimeSpec (repr(C): i64 + i32, padded to 16 bytes) */
struct timespec_r {
    i64 tv_sec;
    int32_t tv_nsec;
    int32_t pad;
};

/* redox-os/syscall src/data.rs Map */
struct map_r {
    u64 offset;
    u64 size;
    u64 flags;
    u64 address;
};

/* redox-os/syscall src/schemev2.rs: 64-byte request, 16-byte completion */
struct sqe {
    u8 opcode;
    u8 sqe_flags;
    uint16_t rsvd;
    u32 tag;
    u64 args[6];
    u64 caller;
};

struct cqe {
    u8 flags;
    u8 extra_raw[3];
    u32 tag;
    u64 result;
};

_Static_assert(sizeof(struct timespec_r) == 16, "TimeSpec is 16 bytes");
_Static_assert(sizeof(struct map_r) == 32, "Map is 32 bytes");
_Static_assert(sizeof(struct sqe) == 64, "Sqe is 64 bytes");
_Static_assert(sizeof(struct cqe) == 16, "Cqe is 16 bytes");

size_t str_len(const char *s);

static inline long r_open(const char *path, u64 flags)
{
    return redox_syscall5(SYS_OPEN, (u64)path, str_len(path), flags, 0, 0);
}
static inline long r_close(long fd) { return redox_syscall5(SYS_CLOSE, (u64)fd, 0, 0, 0, 0); }
static inline long r_dup(long fd, const char *what)
{
    return redox_syscall5(SYS_DUP, (u64)fd, (u64)what, str_len(what), 0, 0);
}
static inline long r_read(long fd, void *buf, u64 len) { return redox_syscall5(SYS_READ, (u64)fd, (u64)buf, len, 0, 0); }
static inline long r_write(long fd, const void *buf, u64 len)
{
    return redox_syscall5(SYS_WRITE, (u64)fd, (u64)buf, len, 0, 0);
}
static inline long r_write_words(long fd, const u64 *words, u64 count) { return r_write(fd, words, count * 8); }
/* SYS_CALL: the low 8 bits of the flags argument are the metadata length in u64 words (kernel syscall/mod.rs) */
static inline long r_call(long fd, void *payload, u64 len, const u64 *meta, u64 meta_words)
{
    return redox_syscall5(SYS_CALL, (u64)fd, (u64)payload, len, meta_words & 0xff, (u64)meta);
}
static inline long r_fmap_anon(struct map_r *map)
{
    return redox_syscall5(SYS_FMAP, ~(u64)0, (u64)map, sizeof(*map), 0, 0);
}
static inline long r_funmap(u64 address, u64 len) { return redox_syscall5(SYS_FUNMAP, address, len, 0, 0, 0); }
static inline long r_clock_gettime(u64 clock, struct timespec_r *ts)
{
    return redox_syscall5(SYS_CLOCK_GETTIME, clock, (u64)ts, 0, 0, 0);
}
static inline long r_nanosleep(const struct timespec_r *req, struct timespec_r *rem)
{
    return redox_syscall5(SYS_NANOSLEEP, (u64)req, (u64)rem, 0, 0, 0);
}
static inline long r_yield(void) { return redox_syscall5(SYS_YIELD, 0, 0, 0, 0, 0); }
/* The timeout is an absolute CLOCK_MONOTONIC deadline: the kernel stores it as the context's wake time. */
static inline long r_futex(volatile u32 *addr, u64 op, u64 val, const struct timespec_r *deadline)
{
    return redox_syscall5(SYS_FUTEX, (u64)addr, op, val, (u64)deadline, 0);
}
