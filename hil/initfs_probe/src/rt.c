/* The probe's runtime; see rt.h. Only the bootstrap context prints; threads report through shared memory. */
#include <stdarg.h>

#include "rt.h"

/* ---------------------------------------------------------------- memory and strings */

void *memset(void *dst, int byte, size_t len)
{
    volatile u8 *d = dst; /* volatile: stop gcc from turning this loop into a call to memset */
    for (size_t i = 0; i < len; i++)
        d[i] = (u8)byte;
    return dst;
}

void *memcpy(void *dst, const void *src, size_t len)
{
    volatile u8 *d = dst;
    const u8 *s = src;
    for (size_t i = 0; i < len; i++)
        d[i] = s[i];
    return dst;
}

void *memmove(void *dst, const void *src, size_t len)
{
    volatile u8 *d = dst;
    const u8 *s = src;
    if (d < s) {
        for (size_t i = 0; i < len; i++)
            d[i] = s[i];
    } else {
        for (size_t i = len; i > 0; i--)
            d[i - 1] = s[i - 1];
    }
    return dst;
}

int memcmp(const void *a, const void *b, size_t len)
{
    const u8 *x = a, *y = b;
    for (size_t i = 0; i < len; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t str_len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

bool str_eq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

bool mem_eq_str(const void *mem, u64 len, const char *s)
{
    return len == str_len(s) && memcmp(mem, s, len) == 0;
}

/* ---------------------------------------------------------------- time */

static u64 clock_ns(u64 clock)
{
    struct timespec_r ts;
    if (r_clock_gettime(clock, &ts) != 0)
        return 0;
    return (u64)ts.tv_sec * NS_PER_S + (u64)ts.tv_nsec;
}

u64 now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
u64 realtime_ns(void) { return clock_ns(CLOCK_REALTIME); }

struct timespec_r ts_from_ns(u64 ns)
{
    struct timespec_r ts = {.tv_sec = (i64)(ns / NS_PER_S), .tv_nsec = (int32_t)(ns % NS_PER_S), .pad = 0};
    return ts;
}

long sleep_ns(u64 ns)
{
    struct timespec_r req = ts_from_ns(ns);
    return r_nanosleep(&req, NULL);
}

/* ---------------------------------------------------------------- output */

long console_fd = -1;

long console_open(void)
{
    if (HIL_CHANNEL_REGDUMP)
        return 0; /* the build chose the register-dump channel */
    long fd = r_open("/scheme/debug", O_WRONLY);
    if (!is_err(fd))
        console_fd = fd;
    return fd;
}

#define X(name) {name, #name},
static const struct {
    u64 value;
    const char *name;
} errnos[] = {HIL_ERRNOS(X)};
#undef X

const char *errno_name(long result)
{
    for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
        if (result == -(long)errnos[i].value)
            return errnos[i].name;
    return "?";
}

struct line {
    char buf[1024];
    size_t len;
};

static void put_char(struct line *l, char c)
{
    if (l->len < sizeof(l->buf) - 1)
        l->buf[l->len++] = c;
}

static void put_str(struct line *l, const char *s)
{
    while (*s)
        put_char(l, *s++);
}

static void put_u64(struct line *l, u64 v)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        put_char(l, digits[--n]);
}

static void put_i64(struct line *l, i64 v)
{
    if (v < 0) {
        put_char(l, '-');
        put_u64(l, (u64)0 - (u64)v);
    } else {
        put_u64(l, (u64)v);
    }
}

static void put_hex(struct line *l, u64 v)
{
    put_str(l, "0x");
    bool started = false;
    for (int shift = 60; shift >= 0; shift -= 4) {
        unsigned nibble = (unsigned)(v >> shift) & 0xf;
        if (nibble || started || shift == 0) {
            put_char(l, "0123456789abcdef"[nibble]);
            started = true;
        }
    }
}

static void put_result(struct line *l, long r)
{
    put_i64(l, r);
    if (is_err(r)) {
        put_str(l, " (");
        put_str(l, errno_name(r));
        put_char(l, ')');
    }
}

static void vformat(struct line *l, const char *fmt, va_list ap)
{
    for (const char *p = fmt; *p; p++) {
        if (*p != '%' || !p[1]) {
            put_char(l, *p);
            continue;
        }
        switch (*++p) {
        case 's': put_str(l, va_arg(ap, const char *)); break;
        case 'u': put_u64(l, va_arg(ap, u64)); break;
        case 'd': put_i64(l, va_arg(ap, i64)); break;
        case 'x': put_hex(l, va_arg(ap, u64)); break;
        case 'E': put_result(l, va_arg(ap, long)); break;
        default: put_char(l, *p); break;
        }
    }
}

static void emit(struct line *l)
{
    put_char(l, '\n');
    if (console_fd >= 0)
        r_write(console_fd, l->buf, l->len);
}

static void vsay(const char *prefix, const char *fmt, va_list ap)
{
    struct line l = {.len = 0};
    put_str(&l, prefix);
    vformat(&l, fmt, ap);
    emit(&l);
}

void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("", fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- case results */

static struct {
    u64 number;
    const char *name;
    enum status status;
} current;

#define MAX_CASES 64
static enum status statuses[MAX_CASES + 1];
static const char *names[MAX_CASES + 1];
static u64 regdump_slots[8];
static const char *const regdump_metrics[] = HIL_REGDUMP_METRICS;
_Static_assert(sizeof(regdump_metrics) / sizeof(regdump_metrics[0]) <= 8, "at most 8 register-dump metrics");

void case_begin(u64 number, const char *name)
{
    current.number = number;
    current.name = name;
    current.status = ST_NONE;
}

enum status case_end(void)
{
    if (current.status == ST_NONE)
        fail("the case reported no result (probe bug)");
    if (current.number <= MAX_CASES) {
        statuses[current.number] = current.status;
        names[current.number] = current.name;
    }
    return current.status;
}

enum status case_status(const char *name)
{
    for (u64 i = 1; i <= MAX_CASES; i++)
        if (names[i] && str_eq(names[i], name))
            return statuses[i];
    return ST_NONE;
}

static bool take_result(enum status status)
{
    if (current.status != ST_NONE) {
        diag("probe bug: case %s reported a second result", current.name);
        return false;
    }
    current.status = status;
    return true;
}

bool need(bool ok, const char *case_name)
{
    if (!ok)
        skip("needs %s, which did not pass", case_name);
    return ok;
}

void pass(void)
{
    if (take_result(ST_PASS))
        say("ok %u %s", current.number, current.name);
}

void fail(const char *fmt, ...)
{
    if (!take_result(ST_FAIL))
        return;
    struct line l = {.len = 0};
    put_str(&l, "not ok ");
    put_u64(&l, current.number);
    put_char(&l, ' ');
    put_str(&l, current.name);
    put_str(&l, " # ");
    va_list ap;
    va_start(ap, fmt);
    vformat(&l, fmt, ap);
    va_end(ap);
    emit(&l);
}

void skip(const char *fmt, ...)
{
    if (!take_result(ST_SKIP))
        return;
    struct line l = {.len = 0};
    put_str(&l, "ok ");
    put_u64(&l, current.number);
    put_char(&l, ' ');
    put_str(&l, current.name);
    put_str(&l, " # SKIP ");
    va_list ap;
    va_start(ap, fmt);
    vformat(&l, fmt, ap);
    va_end(ap);
    emit(&l);
}

void diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("# ", fmt, ap);
    va_end(ap);
}

/* Keeps a metric for the register dump when the build names it (value in thousandths). */
static void regdump_keep(const char *key, u64 thousandths)
{
    struct line full = {.len = 0};
    put_str(&full, current.name);
    put_char(&full, '.');
    put_str(&full, key);
    full.buf[full.len] = 0;
    for (size_t i = 0; i < sizeof(regdump_metrics) / sizeof(regdump_metrics[0]); i++)
        if (str_eq(regdump_metrics[i], full.buf))
            regdump_slots[i] = thousandths;
}

void metric_u(const char *key, u64 value, const char *unit)
{
    regdump_keep(key, value * 1000);
    if (str_eq(unit, "flags"))
        say("# metric %s.%s=%x flags", current.name, key, value);
    else
        say("# metric %s.%s=%u %s", current.name, key, value, unit);
}

void metric_ns_as_us(const char *key, u64 ns)
{
    regdump_keep(key, ns);
    u64 frac = ns % NS_PER_US;
    say("# metric %s.%s=%u.%s%s%u us", current.name, key, ns / NS_PER_US, frac < 100 ? "0" : "", frac < 10 ? "0" : "",
        frac);
}

/*
 * The fallback channel: with no console, the results travel in the registers of a deliberate invalid-opcode
 * fault, which the kernel prints (regdump.py decodes them). Layout version 1:
 * rax magic, rbx/rcx/rdx pass/fail/skip masks (bit n-1 = case n), rsi version << 32 | plan,
 * rdi the console open result, rbp the abi/variant id, r8-r15 the metrics of HIL_REGDUMP_METRICS.
 */
void regdump_finish(u64 plan, u64 console_result)
{
    static u64 regs[15];
    u64 masks[4] = {0, 0, 0, 0};
    for (u64 n = 1; n <= plan && n <= MAX_CASES; n++)
        if (statuses[n] != ST_NONE)
            masks[statuses[n]] |= 1ULL << (n - 1);
    regs[0] = HIL_REGDUMP_MAGIC;
    regs[1] = masks[ST_PASS];
    regs[2] = masks[ST_FAIL];
    regs[3] = masks[ST_SKIP];
    regs[4] = (HIL_REGDUMP_LAYOUT << 32) | plan;
    regs[5] = console_result;
    regs[6] = HIL_BUILD_ID;
    for (int i = 0; i < 8; i++)
        regs[7 + i] = regdump_slots[i];
    __asm__ volatile("lea %0, %%rax\n\t"
                     "mov 8(%%rax), %%rbx\n\t"
                     "mov 16(%%rax), %%rcx\n\t"
                     "mov 24(%%rax), %%rdx\n\t"
                     "mov 32(%%rax), %%rsi\n\t"
                     "mov 40(%%rax), %%rdi\n\t"
                     "mov 48(%%rax), %%rbp\n\t"
                     "mov 56(%%rax), %%r8\n\t"
                     "mov 64(%%rax), %%r9\n\t"
                     "mov 72(%%rax), %%r10\n\t"
                     "mov 80(%%rax), %%r11\n\t"
                     "mov 88(%%rax), %%r12\n\t"
                     "mov 96(%%rax), %%r13\n\t"
                     "mov 104(%%rax), %%r14\n\t"
                     "mov 112(%%rax), %%r15\n\t"
                     "mov 0(%%rax), %%rax\n\t"
                     "ud2" ::"m"(regs)
                     : "memory");
    __builtin_unreachable();
}

/* ---------------------------------------------------------------- threads */

#define MAX_THREADS 80 /* redox-nvme: 64 clients, two servers, an opener, the hello context */
#define STACK_SIZE 16384

static u8 stacks[MAX_THREADS][STACK_SIZE] __attribute__((aligned(16)));
static u64 next_slot;
static long proc_auth_fd = -1, addrspace_fd = -1, filetable_fd = -1;
static long init_result = -EAGAIN;
static const char *init_step = "not attempted";
long proc_self_fd = -1;

extern void thread_trampoline(void);
void thread_main(struct thread *t);

static long init_step_do(const char *step, long result)
{
    init_step = step;
    init_result = result;
    return result;
}

/*
 * The bootstrap's own way to start contexts at this date (redox-os/kernel caf5fa95 src/scheme/proc.rs): the
 * one-time "authority" handle of kernel.proc, dup "cur-context" for ourselves, then per thread dup
 * "new-context" and set its address space, file table and start it.
 */
long threads_init(void)
{
    proc_auth_fd = r_open("/scheme/kernel.proc/authority", O_CLOEXEC);
    if (is_err(init_step_do("open /scheme/kernel.proc/authority", proc_auth_fd)))
        return init_result;
    proc_self_fd = r_dup(proc_auth_fd, "cur-context");
    if (is_err(init_step_do("dup(authority, cur-context)", proc_self_fd)))
        return init_result;
    addrspace_fd = r_dup(proc_self_fd, "addrspace");
    if (is_err(init_step_do("dup(cur-context, addrspace)", addrspace_fd)))
        return init_result;
    filetable_fd = r_dup(proc_self_fd, "filetable");
    if (is_err(init_step_do("dup(cur-context, filetable)", filetable_fd)))
        return init_result;
    return init_step_do("done", 0);
}

const char *threads_failed_step(void) { return init_step; }
long threads_init_result(void) { return init_result; }
u64 threads_started(void) { return next_slot; }

/* Writes words to a fresh dup of the context handle, then closes it (closing applies address-space and file-table
 * changes). */
static long ctx_write(struct thread *t, const char *what, const u64 *words, u64 count)
{
    long fd = r_dup(t->ctx_fd, what);
    if (is_err(fd))
        return fd;
    long written = r_write_words(fd, words, count);
    long closed = r_close(fd);
    if (is_err(written))
        return written;
    return is_err(closed) ? closed : 0;
}

static long spawn_step(struct thread *t, const char *step, long result)
{
    if (is_err(result))
        t->failed_step = step;
    return result;
}

/* A context from "new-context" starts in the null scheme namespace (only memory: and pipe:) with no name; give it
 * ours (namespace 1, root) and a name for the kernel's dumps, through the authority's attrs handle. */
static long set_attrs(struct thread *t, const char *name)
{
    struct {
        u32 pid, euid, egid, ens;
        char debug_name[32];
    } attrs = {.pid = (u32)(THREAD_PID_BASE + next_slot), .euid = 0, .egid = 0, .ens = 1, .debug_name = {0}};
    _Static_assert(sizeof(attrs) == 48, "ProcSchemeAttrs is 48 bytes");
    for (size_t i = 0; name[i] && i < sizeof(attrs.debug_name) - 1; i++)
        attrs.debug_name[i] = name[i];
    struct line path = {.len = 0};
    put_str(&path, "auth-");
    put_u64(&path, (u64)proc_auth_fd);
    put_str(&path, "-attrs");
    path.buf[path.len] = 0;
    long fd = r_dup(t->ctx_fd, path.buf);
    if (is_err(fd))
        return fd;
    long written = r_write(fd, &attrs, sizeof(attrs));
    r_close(fd);
    return is_err(written) ? written : 0;
}

long thread_spawn(struct thread *t, const char *name, void (*fn)(struct thread *), void *arg)
{
    memset(t, 0, sizeof(*t));
    t->fn = fn;
    t->arg = arg;
    t->ctx_fd = t->status_fd = -1;
    if (is_err(init_result))
        return spawn_step(t, init_step, init_result);
    if (next_slot >= MAX_THREADS)
        return spawn_step(t, "a free stack slot", -ENOMEM);
    u64 *sp = (u64 *)(void *)(stacks[next_slot] + STACK_SIZE - 16);
    sp[0] = (u64)t;
    long r = spawn_step(t, "dup(authority, new-context)", t->ctx_fd = r_dup(proc_auth_fd, "new-context"));
    if (is_err(r))
        return r;
    if (is_err(r = spawn_step(t, "dup(context, status)", t->status_fd = r_dup(t->ctx_fd, "status"))))
        return r;
    if (is_err(r = spawn_step(t, "set auth-N-attrs", set_attrs(t, name))))
        return r;
    u64 addrspace[3] = {(u64)addrspace_fd, (u64)sp, (u64)thread_trampoline};
    if (is_err(r = spawn_step(t, "set current-addrspace", ctx_write(t, "current-addrspace", addrspace, 3))))
        return r;
    u64 filetable[1] = {(u64)filetable_fd};
    if (is_err(r = spawn_step(t, "set current-filetable", ctx_write(t, "current-filetable", filetable, 1))))
        return r;
    u64 go[1] = {0};
    t->pid = THREAD_PID_BASE + next_slot++;
    return spawn_step(t, "write start", ctx_write(t, "start", go, 1));
}

void thread_main(struct thread *t)
{
    t->start_ns = now_ns();
    store32(&t->started, 1);
    t->fn(t);
    thread_exit(t);
}

/* ContextVerb::ForceKill on our own status handle ends this context (kernel src/scheme/proc.rs). The status fd
 * stays open in the shared file table: the parent cannot know when the write has been made. */
void thread_exit(struct thread *t)
{
    /* Read before telling the parent: once `finished` is set, the parent may reuse *t for another thread. */
    long status_fd = t->status_fd;
    u64 verb[1] = {CONTEXT_VERB_FORCE_KILL};
    store32(&t->finished, 1);
    r_write_words(status_fd, verb, 1);
    for (;;)
        sleep_ns(NS_PER_S);
}

/* Ends another context: the kernel marks it being killed and makes it runnable; it dies on its way out. */
long thread_kill(struct thread *t)
{
    u64 verb[1] = {CONTEXT_VERB_FORCE_KILL};
    return r_write_words(t->status_fd, verb, 1);
}

bool wait_flag(volatile u32 *flag, u64 timeout_ns)
{
    u64 deadline = now_ns() + timeout_ns;
    while (!load32(flag)) {
        if (now_ns() > deadline)
            return false;
        sleep_ns(NS_PER_MS);
    }
    return true;
}

/* ---------------------------------------------------------------- user scheme servers */

long serve_sqes(long scheme_fd, bool (*serve)(const struct sqe *), volatile u32 *bad_sizes)
{
    static struct sqe batches[2][16]; /* two servers at most run at once (the probe's and the NVMe one) */
    static volatile u32 next;
    struct sqe *batch = batches[__atomic_fetch_add(&next, 1, __ATOMIC_SEQ_CST) % 2];
    for (;;) {
        long n = r_read(scheme_fd, batch, sizeof(batches[0]));
        if (n == -(long)EINTR)
            continue;
        if (is_err(n) || n == 0)
            return n == 0 ? -(long)EPIPE : n;
        if (n % (long)sizeof(struct sqe) && bad_sizes)
            (*bad_sizes)++;
        for (long i = 0; i < n / (long)sizeof(struct sqe); i++)
            if (serve(&batch[i]))
                return 0;
    }
}

void respond_unknown(long scheme_fd, const struct sqe *s)
{
    if (s->sqe_flags & SQE_FLAG_ONEWAY)
        return;
    struct cqe c = {.flags = CQE_RESPOND_REGULAR, .extra_raw = {0, 0, 0}, .tag = s->tag, .result = (u64)-(long)ENOSYS};
    r_write(scheme_fd, &c, sizeof(c));
}
