/*
 * hil-initfs-probe: kernel checks run as the Redox bootstrap program (the initfs entry), before any userspace.
 *
 * It prints the probe protocol (hil/uring_probe/PROTOCOL.md) on the kernel's debug console, one case after the
 * other, and never waits without a deadline: every wait on another context is bounded, and a case that runs
 * out of time says so and the next case runs. Only this context prints; threads report through memory.
 */
#include "rt.h"

#define PROBE_VERSION 1
#define SCHEME_NAME "hilprobe"
#define FILE_HANDLE 7
#define OOO_CLIENTS 8
#define WAIT_S (5 * NS_PER_S)

#define X(name) void case_##name(void); /* the NVMe cases live in nvme.c and depth.c */
HIL_CASES(X)
#undef X

#define X(name) {#name, case_##name},
static const struct {
    const char *name;
    void (*run)(void);
} cases[] = {HIL_CASES(X)};
#undef X
#define CASE_COUNT (sizeof(cases) / sizeof(cases[0]))

#define X(name) " " #name
static const char case_list[] = "# cases" HIL_CASES(X);
#undef X

static bool io_privilege;

/* ================================================================ syscall path and time */

void case_syscall_path(void)
{
    struct timespec_r mono, real;
    long r = r_clock_gettime(CLOCK_MONOTONIC, &mono);
    if (r != 0)
        return fail("clock_gettime(CLOCK_MONOTONIC) returned %E", r);
    if ((r = r_clock_gettime(CLOCK_REALTIME, &real)) != 0)
        return fail("clock_gettime(CLOCK_REALTIME) returned %E", r);
    if ((r = r_clock_gettime(12345, &mono)) != -(long)EINVAL)
        return fail("clock_gettime(12345) returned %E, expected -22 (EINVAL)", r);
    if ((r = redox_syscall5(0x7fff, 0, 0, 0, 0, 0)) != -(long)ENOSYS)
        return fail("unknown syscall 0x7fff returned %E, expected -38 (ENOSYS)", r);
    enum { CALLS = 2000 };
    u64 start = now_ns();
    for (int i = 0; i < CALLS; i++)
        r_clock_gettime(CLOCK_MONOTONIC, &mono);
    u64 per_call = (now_ns() - start) / CALLS;
    long openat = redox_syscall5(SYS_OPENAT, ~0UL, 0, 0, 0, 0); /* tells kernels apart, harmlessly */
    pass();
    metric_ns_as_us("clock_gettime_us", per_call);
    diag("SYS_OPENAT on no fd returned %E: kernels from 66ea2b46 (2025-07-13) have openat (EBADF), older ones "
         "answer ENOSYS",
         openat);
    diag("CLOCK_REALTIME reads %d s: nothing set the epoch offset yet (userspace does, later); no getpid syscall "
         "in this ABI (pids live in the userspace process manager)",
         real.tv_sec);
}

void case_nanosleep(void)
{
    const u64 asked = 20 * NS_PER_MS;
    struct timespec_r req = ts_from_ns(asked), rem = {1, 1, 0};
    u64 real0 = realtime_ns(), t0 = now_ns();
    long r = r_nanosleep(&req, &rem);
    u64 elapsed = now_ns() - t0, real_elapsed = realtime_ns() - real0;
    if (r != 0)
        return fail("nanosleep(20 ms) returned %E", r);
    if (elapsed < asked)
        return fail("nanosleep(20 ms) woke after %u us by CLOCK_MONOTONIC", elapsed / NS_PER_US);
    if (elapsed > 2 * NS_PER_S)
        return fail("nanosleep(20 ms) took %u us", elapsed / NS_PER_US);
    if (rem.tv_sec != 0 || rem.tv_nsec != 0)
        return fail("nanosleep left rem = %d s %d ns after a full sleep", rem.tv_sec, (i64)rem.tv_nsec);
    if (real_elapsed < asked / 2 || real_elapsed > 4 * NS_PER_S)
        return fail("CLOCK_REALTIME moved %u us while CLOCK_MONOTONIC moved %u us", real_elapsed / NS_PER_US,
                    elapsed / NS_PER_US);
    pass();
    metric_ns_as_us("elapsed_us", elapsed);
    metric_ns_as_us("overshoot_us", elapsed - asked);
}

void case_sched_yield(void)
{
    enum { YIELDS = 1000 };
    u64 start = now_ns();
    for (int i = 0; i < YIELDS; i++) {
        long r = r_yield();
        if (r != 0)
            return fail("sched_yield returned %E at call %u", r, (u64)i);
    }
    u64 per_call = (now_ns() - start) / YIELDS;
    pass();
    metric_ns_as_us("yield_us", per_call);
    metric_u("yields", YIELDS, "count");
}

/* ================================================================ futex */

static volatile u32 timeout_word __attribute__((aligned(8)));
static bool timed_out_waiter;

void case_futex_timeout(void)
{
    long r = r_futex(&timeout_word, FUTEX_WAIT, 1, NULL);
    if (r != -(long)EAGAIN)
        return fail("FUTEX_WAIT on a word that differs returned %E, expected -11 (EAGAIN)", r);
    r = r_futex((volatile u32 *)(void *)((volatile u8 *)&timeout_word + 1), FUTEX_WAIT, 0, NULL);
    if (r != -(long)EINVAL)
        return fail("FUTEX_WAIT on a misaligned word returned %E, expected -22 (EINVAL)", r);
    const u64 wait = 30 * NS_PER_MS;
    u64 t0 = now_ns(), deadline = t0 + wait;
    struct timespec_r abs = ts_from_ns(deadline);
    r = r_futex(&timeout_word, FUTEX_WAIT, 0, &abs);
    u64 t1 = now_ns();
    timed_out_waiter = r == -(long)ETIMEDOUT;
    if (r != -(long)ETIMEDOUT)
        return fail("FUTEX_WAIT with a deadline 30 ms ahead returned %E after %u us, expected -110 (ETIMEDOUT)", r,
                    (t1 - t0) / NS_PER_US);
    if (t1 < deadline)
        return fail("FUTEX_WAIT timed out %u us before its deadline", (deadline - t1) / NS_PER_US);
    if (t1 - t0 > 2 * NS_PER_S)
        return fail("FUTEX_WAIT with a 30 ms deadline returned after %u us", (t1 - t0) / NS_PER_US);
    pass();
    metric_ns_as_us("elapsed_us", t1 - t0);
    metric_ns_as_us("late_us", t1 - deadline);
    diag("the timeout is an absolute CLOCK_MONOTONIC deadline (the context's wake time)");
}

void case_futex_timeout_cleanup(void)
{
    if (!timed_out_waiter)
        return skip("futex_timeout left no timed-out waiter to look for");
    long woken = r_futex(&timeout_word, FUTEX_WAKE, 0x7fffffff, NULL);
    if (is_err(woken))
        return fail("FUTEX_WAKE with no waiter returned %E", woken);
    if (woken != 0)
        return fail("FUTEX_WAKE with no waiter woke %u: the FUTEX_WAIT that timed out in futex_timeout is still "
                    "queued (and gets unblocked)",
                    (u64)woken);
    pass();
}

/* ================================================================ anonymous memory */

void case_mmap_anon(void)
{
    const u64 pages = 16, len = pages * 4096;
    struct map_r map = {.offset = 0, .size = len, .flags = PROT_READ | PROT_WRITE | MAP_PRIVATE, .address = 0};
    u64 t0 = now_ns();
    long addr = r_fmap_anon(&map);
    u64 map_ns = now_ns() - t0;
    if (is_err(addr))
        return fail("SYS_FMAP(anonymous, %u bytes) returned %E", len, addr);
    if (addr == 0 || addr % 4096)
        return fail("SYS_FMAP(anonymous) returned the address %x", (u64)addr);
    volatile u64 *words = (volatile u64 *)addr;
    for (u64 i = 0; i < len / 8; i++)
        if (words[i] != 0)
            return fail("fresh anonymous memory is not zero at offset %u", i * 8);
    for (u64 i = 0; i < len / 8; i++)
        words[i] = i * 0x9e3779b97f4a7c15ULL;
    for (u64 i = 0; i < len / 8; i++)
        if (words[i] != i * 0x9e3779b97f4a7c15ULL)
            return fail("anonymous memory lost a write at offset %u", i * 8);
    long r = r_funmap((u64)addr, len);
    if (r != 0)
        return fail("SYS_FUNMAP(%x, %u) returned %E", (u64)addr, len, r);
    /* If the range is really free again, a fixed no-replace mapping gets exactly it, and fresh zeroes. */
    map.flags |= MAP_FIXED_NOREPLACE;
    map.address = (u64)addr;
    long again = r_fmap_anon(&map);
    if (again != addr)
        return fail("mapping the unmapped range again (MAP_FIXED_NOREPLACE) returned %E, expected %x", again,
                    (u64)addr);
    for (u64 i = 0; i < len / 8; i++)
        if (words[i] != 0)
            return fail("the range mapped again still holds old data at offset %u", i * 8);
    if ((r = r_funmap((u64)addr, len)) != 0)
        return fail("the second SYS_FUNMAP returned %E", r);
    pass();
    metric_u("pages", pages, "count");
    metric_ns_as_us("map_us", map_ns);
}

/* ================================================================ a second context */

static bool threads_ok;

static void skip_no_threads(void)
{
    skip("no second context: %s returned %E (see thread_spawn)", threads_failed_step(), threads_init_result());
}

static void hello_thread(struct thread *t)
{
    store64((volatile u64 *)t->arg, 0x68696c2d70726f62ULL);
}

void case_thread_spawn(void)
{
    long r = threads_init();
    if (is_err(r))
        return skip("cannot start a second context: %s returned %E", threads_failed_step(), r);
    static struct thread t;
    static volatile u64 value;
    u64 t0 = now_ns();
    if (is_err(r = thread_spawn(&t, "hil-hello", hello_thread, (void *)&value)))
        return fail("starting a context: %s returned %E", t.failed_step, r);
    if (!wait_flag(&t.finished, WAIT_S))
        return fail("timed out after 5 s: the new context %s", load32(&t.started) ? "started but did not finish"
                                                                                   : "never ran");
    if (load64(&value) != 0x68696c2d70726f62ULL)
        return fail("the new context finished but its write to shared memory is missing (%x)", load64(&value));
    threads_ok = true;
    pass();
    metric_ns_as_us("spawn_us", t.start_ns - t0);
    diag("contexts come from kernel.proc: dup(authority, new-context), current-addrspace, current-filetable, start");
}

struct futex_waiter {
    volatile u32 word;
    u64 timeout_ns; /* 0: wait without a timeout */
    volatile u32 ready;
    long result;
    u64 returned_ns;
};

static void futex_wait_thread(struct thread *t)
{
    struct futex_waiter *w = t->arg;
    struct timespec_r abs = ts_from_ns(now_ns() + w->timeout_ns);
    store32(&w->ready, 1);
    w->result = r_futex(&w->word, FUTEX_WAIT, 0, w->timeout_ns ? &abs : NULL);
    w->returned_ns = now_ns();
}

/* Starts a waiter, lets it block, wakes it; 0 when the wake happened, else the case already failed. */
static int futex_wake_once(struct futex_waiter *w, struct thread *t, long *woken, u64 *woke_at)
{
    store32(&w->word, 0);
    store32(&w->ready, 0);
    long r = thread_spawn(t, "hil-futex-waiter", futex_wait_thread, w);
    if (is_err(r)) {
        fail("starting the waiter: %s returned %E", t->failed_step, r);
        return -1;
    }
    if (!wait_flag(&w->ready, WAIT_S)) {
        fail("timed out after 5 s: the waiter context never ran");
        return -1;
    }
    sleep_ns(30 * NS_PER_MS); /* long enough for it to be blocked in FUTEX_WAIT */
    store32(&w->word, 1);
    *woke_at = now_ns();
    *woken = r_futex(&w->word, FUTEX_WAKE, 1, NULL);
    if (!wait_flag(&t->finished, WAIT_S)) {
        thread_kill(t);
        fail("timed out after 5 s: FUTEX_WAKE returned %E but the waiter did not return", *woken);
        return -1;
    }
    return 0;
}

/* As futex_wake_once, again (up to 3 times) when the waiter had not blocked yet: woke nobody, got EAGAIN. */
static int futex_wake_round(struct futex_waiter *w, struct thread *t, long *woken, u64 *woke_at, u64 *retries)
{
    for (*retries = 0; *retries < 3; (*retries)++) {
        if (futex_wake_once(w, t, woken, woke_at))
            return -1;
        if (!(*woken == 0 && w->result == -(long)EAGAIN))
            return 0;
    }
    return 0;
}

void case_futex_wake(void)
{
    if (!threads_ok)
        return skip_no_threads();
    static struct futex_waiter w;
    static struct thread t;
    long woken;
    u64 woke_at, retries;
    if (futex_wake_round(&w, &t, &woken, &woke_at, &retries))
        return;
    if (woken != 1 || w.result != 0)
        return fail("FUTEX_WAKE returned %E and the waiter's FUTEX_WAIT %E, expected 1 and 0", woken, w.result);
    pass();
    metric_ns_as_us("wake_latency_us", w.returned_ns - woke_at);
    metric_u("retries", retries, "count"); /* rounds where the waiter had not blocked within 30 ms */
}

void case_futex_wake_timeout(void)
{
    if (!threads_ok)
        return skip_no_threads();
    static struct futex_waiter w = {.timeout_ns = 2 * NS_PER_S};
    static struct thread t;
    long woken;
    u64 woke_at, retries;
    if (futex_wake_round(&w, &t, &woken, &woke_at, &retries))
        return;
    u64 latency = w.returned_ns - woke_at;
    if (woken != 1 || w.result != 0)
        return fail("a waiter with a 2 s timeout, woken by FUTEX_WAKE (returned %E), got %E %u ms after the wake",
                    woken, w.result, latency / NS_PER_MS);
    pass();
    metric_ns_as_us("wake_latency_us", latency);
}

/* ================================================================ a user scheme, protocol v2 */

static long scheme_fd = -1, scheme_file_fd = -1;

static struct server {
    struct thread thread;
    volatile u32 expect_reads;
    struct sqe pending[OOO_CLIENTS];
    u32 pending_count;
    u32 max_inflight;
    volatile u32 opens, close_msgs, closes, cancels, bad_sizes, write_errors, reads_served, slow_readers;
    long last_error;
    u8 arrival[OOO_CLIENTS];  /* client index by arrival */
    u8 answered[OOO_CLIENTS]; /* client index by answer */
    u64 callers[OOO_CLIENTS]; /* Sqe.caller by client index */
} server;

static u8 client_bufs[OOO_CLIENTS][256];
static volatile u32 client_done[OOO_CLIENTS];

static void respond(u32 tag, long result)
{
    struct cqe c = {.flags = CQE_RESPOND_REGULAR, .extra_raw = {0, 0, 0}, .tag = tag, .result = (u64)result};
    long w = r_write(scheme_fd, &c, sizeof(c));
    if (w != (long)sizeof(c)) {
        server.write_errors++;
        server.last_error = w;
    }
}

static u64 client_of(const struct sqe *s) { return (s->args[1] - (u64)client_bufs) / sizeof(client_bufs[0]); }

/*
 * Answers every pending read, newest first, each with its length as result and as the filler byte, and waits
 * (up to 1 s) for that reader to return before answering the next: so each completion overtakes every older
 * request, which is still in flight.
 */
static void answer_reads_reversed(long error)
{
    for (u32 i = server.pending_count; i > 0; i--) {
        struct sqe *s = &server.pending[i - 1];
        u64 client = client_of(s);
        if (!error)
            memset((void *)s->args[1], (int)(u8)s->args[2], s->args[2]);
        server.answered[server.pending_count - i] = (u8)client;
        respond(s->tag, error ? error : (long)s->args[2]);
        server.reads_served++;
        if (!error && !wait_flag(&client_done[client], NS_PER_S))
            server.slow_readers++;
    }
    server.pending_count = 0;
}

static bool serve_open(const struct sqe *s)
{
    const char *path = (const char *)s->args[0];
    server.opens++;
    if (mem_eq_str(path, s->args[1], "file"))
        respond(s->tag, FILE_HANDLE);
    else if (mem_eq_str(path, s->args[1], "quit")) {
        answer_reads_reversed(-(long)EIO);
        respond(s->tag, 0);
        return true;
    } else
        respond(s->tag, -(long)ENOENT);
    return false;
}

static void serve_read(const struct sqe *s)
{
    u64 client = client_of(s);
    if (s->args[0] != FILE_HANDLE || client >= OOO_CLIENTS || server.pending_count >= OOO_CLIENTS)
        return respond(s->tag, -(long)EBADF);
    server.arrival[server.pending_count] = (u8)client;
    server.callers[client] = s->caller;
    server.pending[server.pending_count++] = *s;
    if (server.pending_count > server.max_inflight)
        server.max_inflight = server.pending_count;
    if (server.pending_count == load32(&server.expect_reads))
        answer_reads_reversed(0);
}

/* One Sqe; true when the server should stop. */
static bool serve_one(const struct sqe *s)
{
    switch (s->opcode) {
    case SQE_OPEN: return serve_open(s);
    case SQE_READ: serve_read(s); return false;
    case SQE_CLOSE_MSG: server.close_msgs++; return false;
    case SQE_CLOSE: server.closes++; respond(s->tag, 0); return false;
    case SQE_CANCEL: server.cancels++; return false;
    default: respond_unknown(scheme_fd, s); return false;
    }
}

static void server_thread(struct thread *t)
{
    (void)t;
    server.last_error = serve_sqes(scheme_fd, serve_one, &server.bad_sizes);
}

void case_scheme_create(void)
{
    const u64 flags = O_CREAT | O_RDWR | O_CLOEXEC | O_FSYNC | O_EXLOCK;
    scheme_fd = r_open(":" SCHEME_NAME, flags);
    if (is_err(scheme_fd))
        return fail("creating scheme " SCHEME_NAME " (open \":" SCHEME_NAME "\", O_CREAT) returned %E", scheme_fd);
    long again = r_open(":" SCHEME_NAME, flags);
    if (!is_err(again))
        return fail("creating scheme " SCHEME_NAME " a second time succeeded (fd %d)", (i64)again);
    pass();
    diag("scheme socket fd %d (v2: O_FSYNC, one-way close: O_EXLOCK); a second create gives %E", (i64)scheme_fd,
         again);
}

struct opener {
    long fd_closed, close_result, missing, fd_kept;
    u64 open_ns;
};

static void opener_thread(struct thread *t)
{
    struct opener *o = t->arg;
    u64 t0 = now_ns();
    o->fd_closed = r_open("/scheme/" SCHEME_NAME "/file", O_RDWR);
    o->open_ns = now_ns() - t0;
    o->close_result = is_err(o->fd_closed) ? o->fd_closed : r_close(o->fd_closed);
    o->missing = r_open("/scheme/" SCHEME_NAME "/missing", O_RDWR);
    o->fd_kept = r_open("/scheme/" SCHEME_NAME "/file", O_RDWR);
}

static bool scheme_ready(void)
{
    if (!threads_ok) {
        skip_no_threads();
        return false;
    }
    if (is_err(scheme_fd)) {
        skip("no scheme: creating it returned %E (see scheme_create)", scheme_fd);
        return false;
    }
    return true;
}

void case_scheme_open_close(void)
{
    if (!scheme_ready())
        return;
    store32(&server.expect_reads, OOO_CLIENTS);
    long r = thread_spawn(&server.thread, "hil-scheme-server", server_thread, NULL);
    if (is_err(r))
        return fail("starting the scheme server: %s returned %E", server.thread.failed_step, r);
    static struct thread t;
    static struct opener o;
    if (is_err(r = thread_spawn(&t, "hil-scheme-opener", opener_thread, &o)))
        return fail("starting the client: %s returned %E", t.failed_step, r);
    if (!wait_flag(&t.finished, WAIT_S))
        return fail("timed out after 5 s: the client's open/close on the scheme never returned (server saw %u "
                    "opens)",
                    (u64)server.opens);
    scheme_file_fd = o.fd_kept;
    if (is_err(o.fd_closed) || o.close_result != 0)
        return fail("open /scheme/" SCHEME_NAME "/file returned %E, its close %E", o.fd_closed, o.close_result);
    if (o.missing != -(long)ENOENT)
        return fail("open of a path the server refuses returned %E, expected -2 (ENOENT)", o.missing);
    if (is_err(o.fd_kept))
        return fail("a second open returned %E", o.fd_kept);
    u64 deadline = now_ns() + NS_PER_S;
    while (load32(&server.close_msgs) + load32(&server.closes) == 0 && now_ns() < deadline)
        sleep_ns(NS_PER_MS);
    if (load32(&server.close_msgs) + load32(&server.closes) == 0)
        return fail("the server never saw the close (no CloseMsg Sqe within 1 s)");
    pass();
    metric_ns_as_us("open_us", o.open_ns);
    diag("server saw %u opens, %u one-way close messages, %u closes", (u64)server.opens, (u64)server.close_msgs,
         (u64)server.closes);
}

struct reader {
    u64 index;
    long result;
    u64 completion;
    bool data_ok;
};

static volatile u32 completions;

static void reader_thread(struct thread *t)
{
    struct reader *rd = t->arg;
    u64 len = 64 + rd->index * 8;
    u8 *buf = client_bufs[rd->index];
    rd->result = r_read(scheme_file_fd, buf, len);
    rd->completion = __atomic_fetch_add(&completions, 1, __ATOMIC_SEQ_CST);
    store32(&client_done[rd->index], 1);
    rd->data_ok = true;
    for (u64 i = 0; i < len; i++)
        rd->data_ok &= buf[i] == (u8)len;
}

static void quit_thread(struct thread *t) { *(long *)t->arg = r_open("/scheme/" SCHEME_NAME "/quit", O_RDWR); }

static void shutdown_server(void)
{
    static struct thread t;
    static long result;
    if (!is_err(thread_spawn(&t, "hil-scheme-quit", quit_thread, &result)))
        wait_flag(&server.thread.finished, WAIT_S);
}

static void count_ooo(const struct reader *rd, u64 *ooo)
{
    /* A completion is out of order when a read that reached the server later completed earlier. */
    *ooo = 0;
    for (u32 i = 0; i < OOO_CLIENTS; i++)
        for (u32 j = i + 1; j < OOO_CLIENTS; j++)
            if (rd[server.arrival[j]].completion < rd[server.arrival[i]].completion) {
                (*ooo)++;
                break;
            }
}

void case_scheme_out_of_order(void)
{
    if (!scheme_ready())
        return;
    if (is_err(scheme_file_fd))
        return skip("no open file on the scheme (see scheme_open_close)");
    static struct thread threads[OOO_CLIENTS];
    static struct reader readers[OOO_CLIENTS];
    for (u64 i = 0; i < OOO_CLIENTS; i++) {
        readers[i].index = i;
        long r = thread_spawn(&threads[i], "hil-scheme-reader", reader_thread, &readers[i]);
        if (is_err(r))
            return fail("starting reader %u: %s returned %E", i, threads[i].failed_step, r);
    }
    u64 deadline = now_ns() + WAIT_S;
    for (u64 i = 0; i < OOO_CLIENTS; i++)
        if (!wait_flag(&threads[i].finished, deadline > now_ns() ? deadline - now_ns() : 1)) {
            u32 inflight = server.pending_count;
            shutdown_server();
            return fail("timed out after 5 s: reader %u never returned; the server had %u of %u reads in flight",
                        i, (u64)inflight, (u64)OOO_CLIENTS);
        }
    for (u64 i = 0; i < OOO_CLIENTS; i++) {
        u64 len = 64 + i * 8;
        if (readers[i].result != (long)len || !readers[i].data_ok) {
            shutdown_server();
            return fail("reader %u (%u bytes) got %E%s", i, len, readers[i].result,
                        readers[i].data_ok ? "" : " and wrong data");
        }
    }
    shutdown_server();
    if (server.max_inflight != OOO_CLIENTS || server.write_errors || server.bad_sizes)
        return fail("server: %u reads in flight at most (expected %u), %u Cqe writes failed (last %E), %u reads "
                    "not a multiple of 64 bytes",
                    (u64)server.max_inflight, (u64)OOO_CLIENTS, (u64)server.write_errors, server.last_error,
                    (u64)server.bad_sizes);
    if (server.slow_readers)
        return fail("%u readers took over 1 s to return after their answer", (u64)server.slow_readers);
    for (u64 i = 0; i < OOO_CLIENTS; i++)
        if (server.callers[i] != threads[i].pid)
            return fail("reader %u's Sqe names caller %u, its pid is %u", i, server.callers[i], threads[i].pid);
    u64 ooo;
    count_ooo(readers, &ooo);
    if (ooo != OOO_CLIENTS - 1)
        return fail("only %u of %u completions overtook an older request still in flight", ooo,
                    (u64)OOO_CLIENTS - 1);
    pass();
    metric_u("inflight", server.max_inflight, "count");
    metric_u("ooo_completions", ooo, "count");
    diag("arrival order %u %u %u %u %u %u %u %u; answered newest first", (u64)server.arrival[0],
         (u64)server.arrival[1], (u64)server.arrival[2], (u64)server.arrival[3], (u64)server.arrival[4],
         (u64)server.arrival[5], (u64)server.arrival[6], (u64)server.arrival[7]);
}

/* ================================================================ scheduler stress */

struct stress {
    volatile u32 stop;
    volatile u32 words[HIL_STRESS_THREADS / 2];
    volatile u64 rounds[HIL_STRESS_THREADS];
    u64 index[HIL_STRESS_THREADS];
    struct thread threads[HIL_STRESS_THREADS];
};
static struct stress stress;

/* Pairs play ping-pong on a futex word (even: the first's turn, odd: the second's), yielding and sleeping now
 * and then, so wakes, yields and timer wake-ups all run concurrently. */
static void stress_thread(struct thread *t)
{
    u64 me = *(u64 *)t->arg;
    volatile u32 *word = &stress.words[me / 2];
    u32 parity = (u32)(me % 2);
    for (u64 round = 1; !load32(&stress.stop);) {
        u32 v = load32(word);
        if (v % 2 != parity) {
            r_futex(word, FUTEX_WAIT, v, NULL);
            continue;
        }
        if (!__atomic_compare_exchange_n(word, &v, v + 1, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            continue; /* the stop changed the word under us */
        r_futex(word, FUTEX_WAKE, 1, NULL);
        store64(&stress.rounds[me], round);
        if (round % 32 == 0)
            r_yield();
        if (round % 256 == 0)
            sleep_ns(50 * NS_PER_US);
        round++;
    }
}

static u64 stress_total(void)
{
    u64 total = 0;
    for (int i = 0; i < HIL_STRESS_THREADS; i++)
        total += load64(&stress.rounds[i]);
    return total;
}

static void stress_stop(void)
{
    store32(&stress.stop, 1);
    for (int p = 0; p < HIL_STRESS_THREADS / 2; p++) {
        __atomic_fetch_add(&stress.words[p], 2, __ATOMIC_SEQ_CST); /* keeps the turn, changes the value */
        r_futex(&stress.words[p], FUTEX_WAKE, 0x7fffffff, NULL);
    }
}

/* Heartbeats every HIL_STRESS_BEAT_MS while it runs (a second for long runs, a quarter of a short one);
 * counts beats with no progress at all. */
static u64 stress_run(u64 *stalls)
{
    u64 start = now_ns(), last = 0, beat_ns = (u64)HIL_STRESS_BEAT_MS * NS_PER_MS;
    *stalls = 0;
    for (u64 beat = 1; beat <= HIL_STRESS_BEATS; beat++) {
        u64 target = start + beat * beat_ns, now;
        while ((now = now_ns()) < target)
            sleep_ns(target - now < 100 * NS_PER_MS ? target - now : 100 * NS_PER_MS);
        u64 total = stress_total();
        if (total == last)
            (*stalls)++;
        last = total;
        say("# heartbeat sched_stress %u", total);
    }
    return now_ns() - start;
}

void case_sched_stress(void)
{
    if (!threads_ok)
        return skip_no_threads();
    _Static_assert(HIL_STRESS_THREADS % 2 == 0 && HIL_STRESS_THREADS >= 2, "threads come in pairs");
    for (u64 i = 0; i < HIL_STRESS_THREADS; i++) {
        stress.index[i] = i;
        long r = thread_spawn(&stress.threads[i], "hil-stress", stress_thread, &stress.index[i]);
        if (is_err(r)) {
            stress_stop();
            return fail("starting thread %u: %s returned %E", i, stress.threads[i].failed_step, r);
        }
    }
    u64 stalls;
    u64 ran = stress_run(&stalls);
    stress_stop();
    u64 deadline = now_ns() + WAIT_S, stuck = 0, first_stuck = 0;
    for (u64 i = 0; i < HIL_STRESS_THREADS; i++)
        if (!wait_flag(&stress.threads[i].finished, deadline > now_ns() ? deadline - now_ns() : 1)) {
            if (!stuck++)
                first_stuck = i;
            thread_kill(&stress.threads[i]);
        }
    u64 total = stress_total(), min = ~0ULL, max = 0, min_at = 0;
    for (u64 i = 0; i < HIL_STRESS_THREADS; i++) {
        u64 r = load64(&stress.rounds[i]);
        if (r < min) {
            min = r;
            min_at = i;
        }
        max = r > max ? r : max;
    }
    if (stuck)
        fail("timed out after 5 s: %u of %u contexts did not stop (first: %u at round %u, pair word %u)", stuck,
             (u64)HIL_STRESS_THREADS, first_stuck, load64(&stress.rounds[first_stuck]),
             (u64)load32(&stress.words[first_stuck / 2]));
    else if (min == 0)
        fail("context %u made no progress in %u ms", min_at, ran / NS_PER_MS);
    else if (stalls)
        fail("%u of %u heartbeats (every %u ms) without any progress", stalls, (u64)HIL_STRESS_BEATS,
             (u64)HIL_STRESS_BEAT_MS);
    else
        pass();
    metric_u("threads", HIL_STRESS_THREADS, "count");
    metric_u("rounds", total, "count");
    metric_u("rounds_per_s", total * NS_PER_S / (ran ? ran : 1), "ops/s");
    metric_u("min_rounds", min, "count");
    metric_u("max_rounds", max, "count");
    metric_u("stalled_beats", stalls, "count");
    metric_u("beat_ms", HIL_STRESS_BEAT_MS, "ms");
}

/* ================================================================ I/O privilege and the end */

void case_io_privilege(void)
{
    if (proc_self_fd < 0)
        return skip("no kernel.proc handle for this context: %s returned %E", threads_failed_step(),
                    threads_init_result());
    u64 verb[1] = {PROC_VERB_IOPL};
    long r = r_call(proc_self_fd, NULL, 0, verb, 1);
    if (r != 0)
        return fail("SYS_CALL(cur-context, [Iopl]) returned %E", r);
    io_privilege = true;
    const char *line = "hil-initfs-probe: io privilege granted\n";
    for (const char *p = line; *p; p++)
        outb(0xe9, (u8)*p);
    pass();
    diag("I/O ports reachable: 0xe9 (QEMU debugcon) got a line, 0x501 (isa-debug-exit) gets the verdict");
}

/* How many CPUs the kernel brought up: the first line of /scheme/sys/cpu is "CPUs: N" (kernel cpu_count()). */
void case_cpu_count(void)
{
    static char text[512];
    long fd = r_open("/scheme/sys/cpu", O_RDONLY | O_CLOEXEC);
    if (is_err(fd))
        return skip("open /scheme/sys/cpu returned %E", fd);
    long n = r_read(fd, text, sizeof(text) - 1);
    r_close(fd);
    if (is_err(n) || n < 7 || !mem_eq_str(text, 6, "CPUs: "))
        return fail("/scheme/sys/cpu: read returned %E, expected a first line \"CPUs: N\"", n);
    u64 cpus = 0;
    for (long i = 6; i < n && text[i] >= '0' && text[i] <= '9'; i++)
        cpus = cpus * 10 + (u64)(text[i] - '0');
    if (cpus == 0)
        return fail("/scheme/sys/cpu names 0 CPUs");
    pass();
    metric_u("cpus", cpus, "count");
    diag("the kernel counts %u CPU(s) up (/scheme/sys/cpu)", cpus);
}

static void finish(bool all_ok)
{
    if (io_privilege)
        outb(0x501, all_ok ? 25 : 26); /* QEMU isa-debug-exit: exit status 51 pass, 53 fail, as redoxer */
    if (proc_self_fd >= 0) {
        long status = r_dup(proc_self_fd, "status");
        u64 verb[1] = {CONTEXT_VERB_FORCE_KILL};
        if (!is_err(status))
            r_write_words(status, verb, 1);
    }
    for (;;)
        sleep_ns(NS_PER_S);
}

void probe_main(void)
{
    long console = console_open();
    say("KTAP version 1");
    say("1..%u", (u64)CASE_COUNT);
    say("# probe hil-initfs-probe %u redox", (u64)PROBE_VERSION);
    say("%s", case_list);
    say("# variant %s abi %s (%s)", HIL_VARIANT, HIL_ABI_NAME, HIL_ABI_SYSCALL_CRATE);
    say("# channel /scheme/debug fd %d", (i64)console_fd);
    bool all_ok = true;
    for (u64 i = 0; i < CASE_COUNT; i++) {
        case_begin(i + 1, cases[i].name);
        cases[i].run();
        all_ok &= case_end() != ST_FAIL;
    }
    if (console_fd < 0)
        regdump_finish(CASE_COUNT, (u64)console);
    finish(all_ok);
}
