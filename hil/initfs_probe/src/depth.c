/*
 * Scheme-forwarded NVMe reads, as nvmed serves a disk: a server context answers the user scheme `hilnvme`,
 * turning every read Sqe into an NVMe read straight into the caller's buffer (its physical address from the
 * kernel's translation handle), and a second server context polls the completion queue and answers each Sqe
 * in completion order. D client contexts keep D reads in flight; the metrics are the Linux probe's depth_D.
 */
#include "hw.h"
#include "nvme.h"
#include "pattern.h"

#define SCHEME "hilnvme"
#define DISK_HANDLE 1
#define HOLD_HANDLE 2 /* reads on it stay pending until cancelled: the nvme_cancel case */
#define CLIENTS 64
#define DEPTH_OPS 2048 /* reads per depth case: enough for a p99 of 20 samples */
#define SLOTS 128      /* command ids: at most one per in-flight read */
#define DEPTH_WAIT_S 60 /* per case, guest time */

static long scheme_fd = -1, disk_fd = -1;
static struct nvme_queue q;
static struct thread submitter, completer, clients[CLIENTS];
static volatile u32 stop, go, done_clients, server_errors;
static volatile u32 depth_now, ops_per_client;
static u64 client_index[CLIENTS];
static u8 *buffers; /* CLIENTS pages of DMA memory: the clients' read buffers */
static u32 lat_ns[DEPTH_OPS + CLIENTS];
static volatile u32 lat_count, bad_data, read_errors, clock_backwards;
static volatile u64 backwards_max_ns;
static long last_read_error;

static struct slot {
    volatile u32 busy;
    u32 tag;
    u64 seq;
} slots[SLOTS];
static u64 submitted, ooo, next_slot;
static volatile u32 hold_pending, hold_tag, cancels_seen, cancel_tag, hold_fd_ready;
static volatile u64 completed, max_inflight; /* in flight = submitted - completed, seen by the submitter */

static void respond(u32 tag, long result)
{
    struct cqe c = {.flags = CQE_RESPOND_REGULAR, .extra_raw = {0, 0, 0}, .tag = tag, .result = (u64)result};
    if (r_write(scheme_fd, &c, sizeof(c)) != (long)sizeof(c))
        server_errors++;
}

static u64 pick_block(u64 seq)
{
    u64 blocks = HIL_NVME_BYTES / DISK_BLOCK - 8; /* the written blocks at the end stay out */
    return (seq * 2654435761ULL) % blocks;
}

static void submit_read(const struct sqe *s)
{
    u64 phys;
    if (s->args[0] == HOLD_HANDLE) {
        store32(&hold_tag, s->tag);
        store32(&hold_pending, 1);
        return;
    }
    if (s->args[0] != DISK_HANDLE || s->args[2] != DISK_BLOCK || (s->args[1] & 4095) ||
        virt_to_phys((void *)s->args[1], &phys) != 0)
        return respond(s->tag, -(long)EINVAL);
    u64 at = next_slot;
    while (load32(&slots[at % SLOTS].busy))
        at++;
    struct slot *sl = &slots[at % SLOTS];
    next_slot = at + 1;
    sl->tag = s->tag;
    sl->seq = submitted++;
    store32(&sl->busy, 1);
    if (submitted - load64(&completed) > max_inflight)
        max_inflight = submitted - load64(&completed);
    struct nvme_sqe cmd;
    u64 per = nvme_lbas_per_block();
    nvme_rw(&cmd, NVME_CMD_READ, (uint16_t)(at % SLOTS), 1, pick_block(sl->seq) * per, (uint16_t)per, phys);
    nvme_submit(&q, &cmd);
}

static bool serve(const struct sqe *s)
{
    const char *path = (const char *)s->args[0];
    switch (s->opcode) {
    case SQE_OPEN:
        if (mem_eq_str(path, s->args[1], "quit")) {
            store32(&stop, 1);
            respond(s->tag, 0);
            return true;
        }
        if (mem_eq_str(path, s->args[1], "hold"))
            respond(s->tag, HOLD_HANDLE);
        else
            respond(s->tag, mem_eq_str(path, s->args[1], "disk") ? DISK_HANDLE : -(long)ENOENT);
        return false;
    case SQE_CANCEL: /* one-way, with the tag of the request the kernel gave up waiting for */
        store32(&cancel_tag, s->tag);
        __atomic_fetch_add(&cancels_seen, 1, __ATOMIC_SEQ_CST);
        if (load32(&hold_pending) && s->tag == load32(&hold_tag)) {
            store32(&hold_pending, 0);
            respond(s->tag, -(long)ECANCELED);
        }
        return false;
    case SQE_READ: submit_read(s); return false;
    case SQE_CLOSE: respond(s->tag, 0); return false;
    default: respond_unknown(scheme_fd, s); return false;
    }
}

static void submitter_thread(struct thread *t)
{
    (void)t;
    serve_sqes(scheme_fd, serve, NULL);
}

/* A completion is out of order when an older request (by arrival) is still in flight. */
static void complete(const struct nvme_cqe *c)
{
    struct slot *sl = &slots[c->cid % SLOTS];
    for (u32 i = 0; i < SLOTS; i++)
        if (load32(&slots[i].busy) && slots[i].seq < sl->seq) {
            ooo++;
            break;
        }
    u32 tag = sl->tag;
    store32(&sl->busy, 0);
    __atomic_fetch_add(&completed, 1, __ATOMIC_SEQ_CST);
    respond(tag, nvme_status(c) == 0 ? DISK_BLOCK : -(long)EIO);
}

static void completer_thread(struct thread *t)
{
    (void)t;
    struct nvme_cqe c;
    while (!load32(&stop)) {
        if (nvme_poll(&q, &c))
            complete(&c);
        else
            r_yield();
    }
}

static void client_thread(struct thread *t)
{
    u64 me = *(u64 *)t->arg;
    u8 *buf = buffers + me * DISK_BLOCK;
    u32 seen = 0;
    for (;;) {
        while (load32(&go) == seen)
            r_futex(&go, FUTEX_WAIT, seen, NULL);
        seen = load32(&go);
        if (load32(&stop))
            return;
        if (me >= load32(&depth_now))
            continue;
        for (u32 i = 0; i < load32(&ops_per_client); i++) {
            u64 t0 = now_ns();
            long r = r_read(disk_fd, buf, DISK_BLOCK);
            u64 t1 = now_ns(), took = t1 - t0;
            if (r != DISK_BLOCK) {
                read_errors++;
                last_read_error = r;
                break;
            }
            if (t1 < t0) { /* CLOCK_MONOTONIC went backwards across the read: no latency to keep */
                __atomic_fetch_add(&clock_backwards, 1, __ATOMIC_SEQ_CST);
                if (t0 - t1 > backwards_max_ns)
                    backwards_max_ns = t0 - t1;
                continue;
            }
            u32 at = __atomic_fetch_add(&lat_count, 1, __ATOMIC_SEQ_CST);
            if (at < sizeof(lat_ns) / sizeof(lat_ns[0]))
                lat_ns[at] = took > 0xffffffffULL ? 0xffffffffu : (u32)took;
            if (disk_block_check(buf, HIL_DISK_SEED) == ~0ULL)
                bad_data++;
        }
        __atomic_fetch_add(&done_clients, 1, __ATOMIC_SEQ_CST);
    }
}

static void opener(struct thread *t) { *(long *)t->arg = r_open("/scheme/" SCHEME "/disk", O_RDWR); }

static long start_server(void)
{
    scheme_fd = r_open(":" SCHEME, O_CREAT | O_RDWR | O_CLOEXEC | O_FSYNC | O_EXLOCK);
    if (is_err(scheme_fd))
        return scheme_fd;
    u64 phys;
    long addr = dma_alloc(CLIENTS, &phys);
    if (is_err(addr))
        return addr;
    buffers = (u8 *)addr;
    long r;
    if (is_err(r = thread_spawn(&submitter, "hil-nvme-submit", submitter_thread, NULL)))
        return r;
    if (is_err(r = thread_spawn(&completer, "hil-nvme-complete", completer_thread, NULL)))
        return r;
    static struct thread t;
    static long fd = -(long)EAGAIN;
    if (is_err(r = thread_spawn(&t, "hil-nvme-open", opener, &fd)))
        return r;
    if (!wait_flag(&t.finished, 5 * NS_PER_S))
        return -(long)ETIMEDOUT;
    disk_fd = fd;
    return fd;
}

void case_nvme_scheme(void)
{
    if (!nvme_ready())
        return skip("needs nvme_io_queue, which did not pass");
    long r = nvme_create_queue_pair(&q, 4);
    if (r != 0)
        return fail("creating I/O queue pair 4 for the scheme server: %E", r);
    if (is_err(r = start_server()))
        return fail("serving scheme " SCHEME ": %E (%s)", r, hw_failed_step());
    for (u64 i = 0; i < CLIENTS; i++) {
        client_index[i] = i;
        if (is_err(r = thread_spawn(&clients[i], "hil-nvme-client", client_thread, &client_index[i])))
            return fail("starting client %u: %s returned %E", i, clients[i].failed_step, r);
    }
    pass();
    diag("scheme " SCHEME " (protocol v2) served by two contexts: one turns read Sqes into NVMe reads on queue 4 "
         "(buffers translated by /scheme/memory/translation), one polls completions and answers in their order; "
         "%u client contexts",
         (u64)CLIENTS);
}

static void sort_u32(u32 *a, u32 n)
{
    for (u32 i = 1; i < n; i++) {
        u32 v = a[i], j = i;
        for (; j > 0 && a[j - 1] > v; j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
}

static void run_depth(u32 depth)
{
    if (case_status("nvme_scheme") != ST_PASS)
        return skip("needs nvme_scheme, which did not pass");
    u32 per = DEPTH_OPS / depth;
    store32(&depth_now, depth);
    store32(&ops_per_client, per);
    store32(&done_clients, 0);
    store32(&lat_count, 0);
    bad_data = read_errors = clock_backwards = 0;
    backwards_max_ns = 0;
    ooo = 0;
    max_inflight = 0;
    u64 t0 = now_ns();
    __atomic_fetch_add(&go, 1, __ATOMIC_SEQ_CST);
    r_futex(&go, FUTEX_WAKE, CLIENTS, NULL);
    u64 deadline = t0 + DEPTH_WAIT_S * NS_PER_S;
    while (load32(&done_clients) < depth && now_ns() < deadline)
        sleep_ns(NS_PER_MS);
    u64 wall = now_ns() - t0;
    u32 n = load32(&lat_count);
    if (n == 0)
        return fail("no read kept a latency: CLOCK_MONOTONIC went backwards across all %u", (u64)clock_backwards);
    if (load32(&done_clients) < depth)
        return fail("timed out after %u s: %u of %u clients done, %u reads returned", (u64)DEPTH_WAIT_S,
                    (u64)load32(&done_clients), (u64)depth, (u64)n);
    if (read_errors || bad_data || server_errors)
        return fail("%u reads failed (last %E), %u returned data that is not the known pattern, %u Cqe writes failed",
                    (u64)read_errors, last_read_error, (u64)bad_data, (u64)server_errors);
    sort_u32(lat_ns, n);
    pass();
    u64 ops = n + load32(&clock_backwards);
    metric_u("iops", ops * NS_PER_S / (wall ? wall : 1), "ops/s");
    metric_ns_as_us("lat_p50_us", lat_ns[n / 2]);
    metric_ns_as_us("lat_p99_us", lat_ns[(n * 99) / 100]);
    metric_ns_as_us("lat_max_us", lat_ns[n - 1]);
    metric_u("ooo", ooo, "count");
    metric_u("ops", ops, "count");
    metric_u("max_inflight", max_inflight, "count");
    metric_u("clock_backwards", clock_backwards, "count");
    if (clock_backwards)
        diag("CLOCK_MONOTONIC read earlier after %u reads than before them (by up to %u us): kernel clock bug; "
             "those reads are counted in iops but not in the latencies",
             (u64)clock_backwards, backwards_max_ns / NS_PER_US);
    if (max_inflight < depth)
        diag("at most %u of %u reads were in flight at the server at once", max_inflight, (u64)depth);
}

void case_depth_1(void) { run_depth(1); }
void case_depth_8(void) { run_depth(8); }
void case_depth_32(void) { run_depth(32); }
void case_depth_64(void) { run_depth(64); }

/* ---------------------------------------------------------------- cancellation */

struct holder {
    long fd, result;
    u8 buf[64];
};

static void hold_thread(struct thread *t)
{
    struct holder *h = t->arg;
    h->fd = r_open("/scheme/" SCHEME "/hold", O_RDWR);
    store32(&hold_fd_ready, 1);
    if (!is_err(h->fd))
        h->result = r_read(h->fd, h->buf, sizeof(h->buf));
}

static bool wait_u32(volatile u32 *word, u64 timeout_ns)
{
    u64 deadline = now_ns() + timeout_ns;
    while (!load32(word) && now_ns() < deadline)
        sleep_ns(NS_PER_MS);
    return load32(word) != 0;
}

/*
 * A read the server holds is cancelled by interrupting its caller (kernel.proc ContextVerb::Interrupt): the
 * kernel then sends a one-way Cancel Sqe with the request's tag (src/scheme/user.rs, a wake-up without a
 * response), the server answers ECANCELED and the caller's read returns EINTR. NVMe-level Abort is not tried:
 * QEMU completes a read long before an Abort could reach it.
 */
void case_nvme_cancel(void)
{
    if (case_status("nvme_scheme") != ST_PASS)
        return skip("needs nvme_scheme, which did not pass");
    static struct thread t;
    static struct holder h = {.fd = -(long)EAGAIN, .result = -(long)EAGAIN};
    long r = thread_spawn(&t, "hil-nvme-hold", hold_thread, &h);
    if (is_err(r))
        return fail("starting the caller: %s returned %E", t.failed_step, r);
    if (!wait_u32(&hold_pending, 5 * NS_PER_S))
        return fail("timed out after 5 s: the held read never reached the server (open returned %E)", h.fd);
    u64 verb[1] = {CONTEXT_VERB_INTERRUPT}, t0 = now_ns();
    if ((r = r_write_words(t.status_fd, verb, 1)) < 0)
        return skip("interrupting the caller (write ContextVerb::Interrupt to its status handle) returned %E", r);
    if (!wait_flag(&t.finished, 5 * NS_PER_S)) {
        u32 seen = load32(&cancels_seen);
        thread_kill(&t);
        return fail("timed out after 5 s: the interrupted read never returned (%u Cancel Sqes reached the server)",
                    (u64)seen);
    }
    if (!load32(&cancels_seen) || load32(&cancel_tag) != load32(&hold_tag))
        return fail("the read returned %E but no Cancel Sqe with its tag reached the server", h.result);
    if (h.result != -(long)EINTR)
        return fail("the cancelled read returned %E, expected -4 (EINTR: the kernel turns ECANCELED into it)",
                    h.result);
    pass();
    metric_ns_as_us("cancel_us", now_ns() - t0);
    diag("scheme protocol v2 at this kernel has cancellation: a one-way Cancel Sqe (opcode 25) with the tag; "
         "the server answered ECANCELED, the caller got EINTR");
}
