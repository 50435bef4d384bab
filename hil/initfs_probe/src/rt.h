/* The probe's tiny runtime: memory and string helpers, time, output lines, case results, threads. */
#pragma once

#include "hil_build.h"
#include "redox.h"

#define NS_PER_US 1000ULL
#define NS_PER_MS 1000000ULL
#define NS_PER_S 1000000000ULL

/* ---- memory and strings (gcc may call the mem* functions for struct copies) ---- */
void *memset(void *dst, int byte, size_t len);
void *memcpy(void *dst, const void *src, size_t len);
void *memmove(void *dst, const void *src, size_t len);
int memcmp(const void *a, const void *b, size_t len);
bool str_eq(const char *a, const char *b);
bool mem_eq_str(const void *mem, u64 len, const char *s);

/* ---- time ---- */
u64 now_ns(void); /* CLOCK_MONOTONIC, 0 if the call fails */
u64 realtime_ns(void);
struct timespec_r ts_from_ns(u64 ns);
long sleep_ns(u64 ns);

/* ---- output: one whole line per SYS_WRITE on the kernel's debug console ---- */
/* say() formats: %s string, %u u64, %d i64, %x u64 as 0x hex, %E a syscall result ("-38 (ENOSYS)"), %% */
void say(const char *fmt, ...);
long console_open(void);
extern long console_fd;
const char *errno_name(long result);

/* ---- the current case ---- */
enum status { ST_NONE, ST_PASS, ST_FAIL, ST_SKIP };
void case_begin(u64 number, const char *name);
enum status case_end(void);
void pass(void);
void fail(const char *fmt, ...);
void skip(const char *fmt, ...);
void diag(const char *fmt, ...);
bool need(bool ok, const char *case_name); /* false (and the case skipped) when an earlier case did not pass */
void metric_u(const char *key, u64 value, const char *unit);
void metric_ns_as_us(const char *key, u64 ns); /* printed in us with three decimals */
enum status case_status(const char *name);    /* the result of an earlier case */
void regdump_finish(u64 plan, u64 console_result) __attribute__((noreturn));

/* ---- a user scheme's server loop: reads Sqes in batches until `serve` says stop (0) or a read fails (its
 * result; 0 bytes gives -EPIPE); *bad_sizes counts reads that were not a whole number of Sqes ---- */
long serve_sqes(long scheme_fd, bool (*serve)(const struct sqe *), volatile u32 *bad_sizes);
void respond_unknown(long scheme_fd, const struct sqe *s); /* ENOSYS unless the Sqe is one-way */

/* ---- port I/O, only after the kernel granted I/O privilege (the io_privilege case) ---- */
static inline void outb(uint16_t port, u8 value) { __asm__ volatile("outb %0, %1" ::"a"(value), "Nd"(port)); }

/* ---- threads: new kernel contexts sharing our address space and file table ---- */
struct thread {
    long ctx_fd;
    long status_fd;
    void (*fn)(struct thread *);
    void *arg;
    u64 start_ns; /* set by the thread when it first runs */
    volatile u32 started;
    volatile u32 finished;
    const char *failed_step;
    u64 pid; /* what the kernel puts in Sqe.caller for its requests */
};

#define THREAD_PID_BASE 0x1000

extern long proc_self_fd; /* kernel.proc handle of the bootstrap context, for SYS_CALL verbs */
long threads_init(void);
const char *threads_failed_step(void);
long threads_init_result(void);
long thread_spawn(struct thread *t, const char *name, void (*fn)(struct thread *), void *arg);
void thread_exit(struct thread *t) __attribute__((noreturn));
long thread_kill(struct thread *t);
bool wait_flag(volatile u32 *flag, u64 timeout_ns);
u64 threads_started(void);

static inline u32 load32(volatile u32 *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void store32(volatile u32 *p, u32 v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline u64 load64(volatile u64 *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void store64(volatile u64 *p, u64 v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
