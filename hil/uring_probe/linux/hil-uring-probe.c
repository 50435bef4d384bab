/*
 * hil-uring-probe: io_uring conformance and latency probe for hil's Linux reference guest.
 *
 * Talks to the kernel through the raw io_uring syscalls (no liburing) so that what is measured is the kernel,
 * and prints its results in the line protocol described in hil/uring_probe/PROTOCOL.md (KTAP-like: one
 * "ok"/"not ok" line per case, then "# metric case.name=value unit" and diagnostic lines for that case).
 *
 * Build: gcc -O2 -static -Wall -Wextra -Werror -o hil-uring-probe hil-uring-probe.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

#define PROBE_NAME "hil-uring-probe"
#define PROBE_VERSION "1"
#define PROBE_OS "linux"

#define IO_SIZE 4096u
#define MAX_DEPTH 256u
#define MAX_DEPTHS 16u
#define WAIT_LIMIT_MS 10000u /* one wait for a completion; a healthy TCG guest needs milliseconds */
#define HEARTBEAT_NS 1000000000ull
#define NOP_BATCH 256u
/* The defaults take about 3 s under TCG; --quick divides the work for smoke tests. */
#define QUICK_DIVISOR 5u

/* ------------------------------------------------------------------------------------------------------------
 * Small utilities
 */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A 64-bit finalizer: spreads every input bit over the output, so neighbouring blocks get unrelated data. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return x;
}

static uint64_t next_random(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ull;
    return mix64(*state);
}

static void *alloc_aligned(size_t size)
{
    void *buf = NULL;
    if (posix_memalign(&buf, IO_SIZE, size) != 0)
        return NULL;
    memset(buf, 0, size);
    return buf;
}

/* ------------------------------------------------------------------------------------------------------------
 * Block pattern. Word 0 holds the seed and word 1 the block number in clear, so a mismatch can say whether the
 * device returned stale data (another seed) or another block's data (another block number).
 */

#define WORDS_PER_BLOCK (IO_SIZE / sizeof(uint64_t))

static void fill_block(void *buf, uint64_t seed, uint64_t block)
{
    uint64_t *words = buf;
    words[0] = seed;
    words[1] = block;
    for (size_t i = 2; i < WORDS_PER_BLOCK; i++)
        words[i] = mix64(seed ^ (block * WORDS_PER_BLOCK + i));
}

/* Returns -1 when the block holds the expected pattern, else the offset of the first differing byte. */
static long first_bad_byte(const void *buf, uint64_t seed, uint64_t block)
{
    static uint64_t expected[WORDS_PER_BLOCK];
    const unsigned char *got = buf;
    fill_block(expected, seed, block);
    const unsigned char *want = (const unsigned char *)expected;
    if (memcmp(got, want, IO_SIZE) == 0)
        return -1;
    for (long i = 0; i < (long)IO_SIZE; i++)
        if (got[i] != want[i])
            return i;
    return -1;
}

/* ------------------------------------------------------------------------------------------------------------
 * Case outcome: the result line is printed only when the case ends, followed by its metric and diagnostic
 * lines, because the protocol attaches those lines to the case they follow.
 */

#define MAX_LINES 32
#define LINE_LEN 256

struct outcome {
    const char *name;
    int failed;
    char reason[LINE_LEN];
    char lines[MAX_LINES][LINE_LEN];
    int line_count;
};

/* A reason or diagnostic must stay on one line and must not start a directive of its own. */
static void sanitize(char *text)
{
    for (; *text; text++)
        if (*text == '\n' || *text == '\r' || *text == '#')
            *text = ' ';
}

static void add_line(struct outcome *o, const char *prefix, const char *fmt, va_list args)
{
    if (o->line_count >= MAX_LINES)
        return;
    char body[LINE_LEN];
    vsnprintf(body, sizeof body, fmt, args);
    sanitize(body);
    snprintf(o->lines[o->line_count++], LINE_LEN, "%s%s", prefix, body);
}

__attribute__((format(printf, 2, 3))) static void diag(struct outcome *o, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    add_line(o, "# ", fmt, args);
    va_end(args);
}

/* The first failure becomes the reason on the result line; later ones are kept as diagnostics. */
__attribute__((format(printf, 2, 3))) static void fail(struct outcome *o, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    if (!o->failed) {
        vsnprintf(o->reason, sizeof o->reason, fmt, args);
        sanitize(o->reason);
    } else {
        add_line(o, "# also: ", fmt, args);
    }
    va_end(args);
    o->failed = 1;
}

__attribute__((format(printf, 4, 5))) static void metric(struct outcome *o, const char *key, const char *unit,
                                                         const char *value_fmt, ...)
{
    if (o->line_count >= MAX_LINES)
        return;
    char value[64];
    va_list args;
    va_start(args, value_fmt);
    vsnprintf(value, sizeof value, value_fmt, args);
    va_end(args);
    snprintf(o->lines[o->line_count++], LINE_LEN, "# metric %s.%s=%s %s", o->name, key, value, unit);
}

static void print_outcome(unsigned number, const struct outcome *o)
{
    if (o->failed)
        printf("not ok %u %s # %s\n", number, o->name, o->reason);
    else
        printf("ok %u %s\n", number, o->name);
    for (int i = 0; i < o->line_count; i++)
        printf("%s\n", o->lines[i]);
}

/* Progress for the host's watchdog: one line per second at most while a long case runs. */
static void heartbeat(const char *name, uint64_t count, uint64_t *last_ns)
{
    uint64_t t = now_ns();
    if (t - *last_ns < HEARTBEAT_NS)
        return;
    *last_ns = t;
    printf("# heartbeat %s %llu\n", name, (unsigned long long)count);
}

/* ------------------------------------------------------------------------------------------------------------
 * The ring: raw syscalls, the three mappings, and SQE/CQE bookkeeping with explicit acquire/release ordering
 * on the indices shared with the kernel.
 */

struct ring {
    int fd;
    unsigned features;
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned *sq_head;
    unsigned *sq_tail;
    unsigned *sq_mask;
    unsigned *sq_array;
    unsigned *cq_head;
    unsigned *cq_tail;
    unsigned *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    unsigned sqe_tail; /* SQEs handed out locally; published to the kernel on submit */
    void *sq_map;
    void *cq_map;
    size_t sq_map_len;
    size_t cq_map_len;
    size_t sqes_len;
};

static int sys_result(long ret)
{
    return ret < 0 ? -errno : (int)ret;
}

static int uring_setup(unsigned entries, struct io_uring_params *params)
{
    return sys_result(syscall(__NR_io_uring_setup, entries, params));
}

static int uring_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags, const void *arg,
                       size_t arg_size)
{
    return sys_result(syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, arg_size));
}

static int uring_register(int fd, unsigned opcode, void *arg, unsigned count)
{
    return sys_result(syscall(__NR_io_uring_register, fd, opcode, arg, count));
}

static void *map_ring(int fd, size_t length, off_t offset)
{
    void *ptr = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
    return ptr == MAP_FAILED ? NULL : ptr;
}

static void ring_close(struct ring *r)
{
    if (r->sqes)
        munmap(r->sqes, r->sqes_len);
    if (r->cq_map && r->cq_map != r->sq_map)
        munmap(r->cq_map, r->cq_map_len);
    if (r->sq_map)
        munmap(r->sq_map, r->sq_map_len);
    if (r->fd >= 0)
        close(r->fd);
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

static void ring_bind_pointers(struct ring *r, const struct io_uring_params *p)
{
    char *sq = r->sq_map;
    char *cq = r->cq_map;
    r->sq_head = (unsigned *)(sq + p->sq_off.head);
    r->sq_tail = (unsigned *)(sq + p->sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p->sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p->sq_off.array);
    r->cq_head = (unsigned *)(cq + p->cq_off.head);
    r->cq_tail = (unsigned *)(cq + p->cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p->cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);
}

/* Returns 0 or -errno; on failure the ring is left closed. */
static int ring_open(struct ring *r, unsigned entries)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    memset(r, 0, sizeof *r);
    r->fd = uring_setup(entries, &p);
    if (r->fd < 0) {
        int err = r->fd;
        r->fd = -1;
        return err;
    }
    r->features = p.features;
    r->sq_entries = p.sq_entries;
    r->cq_entries = p.cq_entries;
    r->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) {
        if (r->cq_map_len > r->sq_map_len)
            r->sq_map_len = r->cq_map_len;
        r->cq_map_len = r->sq_map_len;
    }
    r->sq_map = map_ring(r->fd, r->sq_map_len, IORING_OFF_SQ_RING);
    r->cq_map = single ? r->sq_map : map_ring(r->fd, r->cq_map_len, IORING_OFF_CQ_RING);
    r->sqes = map_ring(r->fd, r->sqes_len, IORING_OFF_SQES);
    if (!r->sq_map || !r->cq_map || !r->sqes) {
        int err = -errno;
        ring_close(r);
        return err;
    }
    ring_bind_pointers(r, &p);
    return 0;
}

/* A zeroed SQE at the local tail, or NULL when the submission queue is full. */
static struct io_uring_sqe *ring_get_sqe(struct ring *r)
{
    unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    if (r->sqe_tail - head >= r->sq_entries)
        return NULL;
    unsigned index = r->sqe_tail & *r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[index];
    memset(sqe, 0, sizeof *sqe);
    r->sq_array[index] = index;
    r->sqe_tail++;
    return sqe;
}

/*
 * Publishes queued SQEs and, if wait_nr > 0, waits for that many completions for at most timeout_ms (when the
 * kernel has IORING_FEAT_EXT_ARG; otherwise the per-case alarm is the only bound). Returns what
 * io_uring_enter returned: SQEs consumed, or -errno (-ETIME when the wait timed out with nothing submitted).
 */
static int ring_submit(struct ring *r, unsigned wait_nr, unsigned timeout_ms)
{
    __atomic_store_n(r->sq_tail, r->sqe_tail, __ATOMIC_RELEASE);
    unsigned pending = r->sqe_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    if (wait_nr == 0)
        return pending ? uring_enter(r->fd, pending, 0, 0, NULL, 0) : 0;
    unsigned flags = IORING_ENTER_GETEVENTS;
    if (!(r->features & IORING_FEAT_EXT_ARG))
        return uring_enter(r->fd, pending, wait_nr, flags, NULL, _NSIG / 8);
    struct __kernel_timespec ts = {
        .tv_sec = timeout_ms / 1000,
        .tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
    };
    struct io_uring_getevents_arg arg = {.ts = (uint64_t)(uintptr_t)&ts};
    return uring_enter(r->fd, pending, wait_nr, flags | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
}

/* Copies the next CQE out and releases its slot; returns 0 when the completion queue is empty. */
static int ring_pop(struct ring *r, struct io_uring_cqe *out)
{
    unsigned head = *r->cq_head;
    if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
        return 0;
    *out = r->cqes[head & *r->cq_mask];
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    return 1;
}

/* Submits what is queued and waits for one CQE, never longer than timeout_ms. Returns 0 or -errno. */
static int ring_wait(struct ring *r, struct io_uring_cqe *out, unsigned timeout_ms)
{
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        if (ring_pop(r, out))
            return 0;
        uint64_t t = now_ns();
        if (t >= deadline)
            return -ETIME;
        unsigned left_ms = (unsigned)((deadline - t) / 1000000ull) + 1;
        int ret = ring_submit(r, 1, left_ms);
        if (ret < 0 && ret != -ETIME && ret != -EINTR)
            return ret;
    }
}

/* Waits for `count` CQEs into `out`; on failure reports through the outcome and returns -1. */
static int ring_wait_many(struct ring *r, struct io_uring_cqe *out, unsigned count, struct outcome *o)
{
    for (unsigned i = 0; i < count; i++) {
        int ret = ring_wait(r, &out[i], WAIT_LIMIT_MS);
        if (ret == -ETIME) {
            fail(o, "only %u of %u completions within %u ms", i, count, WAIT_LIMIT_MS);
            return -1;
        }
        if (ret < 0) {
            fail(o, "io_uring_enter failed: %s", strerror(-ret));
            return -1;
        }
    }
    return 0;
}

static int open_ring_or_fail(struct ring *r, unsigned entries, struct outcome *o)
{
    int ret = ring_open(r, entries);
    if (ret < 0)
        fail(o, "io_uring_setup(%u) failed: %s", entries, strerror(-ret));
    return ret;
}

static void prep_nop(struct io_uring_sqe *sqe, uint64_t user_data)
{
    sqe->opcode = IORING_OP_NOP;
    sqe->user_data = user_data;
}

static void prep_rw(struct io_uring_sqe *sqe, int opcode, int fd, void *buf, unsigned len, uint64_t offset,
                    uint64_t user_data)
{
    sqe->opcode = (uint8_t)opcode;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)buf;
    sqe->len = len;
    sqe->off = offset;
    sqe->user_data = user_data;
}

/* ------------------------------------------------------------------------------------------------------------
 * Probe configuration and the device
 */

struct config {
    const char *device;
    uint64_t scratch_offset;
    uint64_t scratch_size;
    unsigned depths[MAX_DEPTHS];
    unsigned depth_count;
    unsigned ops;
    unsigned nop_rounds;
    unsigned case_timeout_s;
    uint64_t seed;
    int scratch_written; /* odirect_write_read filled the scratch region with the pattern of `seed` */
};

/* Opens the device for O_DIRECT I/O and checks the scratch region fits; -1 after reporting why not. */
static int open_device(const struct config *cfg, struct outcome *o)
{
    if (!cfg->device) {
        fail(o, "no --device given");
        return -1;
    }
    int fd = open(cfg->device, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        fail(o, "cannot open %s: %s", cfg->device, strerror(errno));
        return -1;
    }
    uint64_t size = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fail(o, "cannot stat %s: %s", cfg->device, strerror(errno));
        close(fd);
        return -1;
    }
    if (S_ISREG(st.st_mode))
        size = (uint64_t)st.st_size;
    else if (ioctl(fd, BLKGETSIZE64, &size) != 0)
        size = 0;
    int logical_block = 512;
    if (S_ISBLK(st.st_mode) && ioctl(fd, BLKSSZGET, &logical_block) == 0 && logical_block > (int)IO_SIZE) {
        fail(o, "%s has %d-byte logical blocks; the probe does 4096-byte I/O", cfg->device, logical_block);
        close(fd);
        return -1;
    }
    if (cfg->scratch_offset + cfg->scratch_size > size) {
        fail(o, "scratch region %llu+%llu is beyond the end of %s (%llu bytes)",
             (unsigned long long)cfg->scratch_offset, (unsigned long long)cfg->scratch_size, cfg->device,
             (unsigned long long)size);
        close(fd);
        return -1;
    }
    return fd;
}

static uint64_t scratch_blocks(const struct config *cfg)
{
    return cfg->scratch_size / IO_SIZE;
}

static uint64_t block_offset(const struct config *cfg, uint64_t block)
{
    return cfg->scratch_offset + block * IO_SIZE;
}

/* ------------------------------------------------------------------------------------------------------------
 * The I/O engine shared by odirect_write_read and the depth cases: keeps `depth` 4 KiB requests in flight until
 * `total` have completed, records per-request latency and completions that overtook an older request.
 */

enum io_pattern { IO_SEQUENTIAL_WRITE, IO_SEQUENTIAL_VERIFY, IO_RANDOM_READ };

struct io_slot {
    void *buf;
    uint64_t block;
    uint64_t seq;
    uint64_t submit_ns;
    int busy;
};

struct io_run {
    const struct config *cfg;
    struct outcome *o;
    struct ring ring;
    int fd;
    enum io_pattern pattern;
    unsigned depth;
    uint64_t total;
    int verify;
    uint64_t random_state;
    struct io_slot slots[MAX_DEPTH];
    unsigned free_slots[MAX_DEPTH];
    unsigned free_count;
    unsigned in_flight;
    uint64_t issued;
    uint64_t completed;
    uint64_t out_of_order;
    uint64_t *latency_ns;
    uint64_t elapsed_ns;
    uint64_t last_heartbeat_ns;
};

static uint64_t pick_block(struct io_run *run)
{
    if (run->pattern == IO_RANDOM_READ)
        return next_random(&run->random_state) % scratch_blocks(run->cfg);
    return run->issued;
}

static void queue_request(struct io_run *run, struct io_uring_sqe *sqe)
{
    unsigned index = run->free_slots[--run->free_count];
    struct io_slot *slot = &run->slots[index];
    slot->block = pick_block(run);
    slot->seq = run->issued++;
    slot->busy = 1;
    int opcode = IORING_OP_READ;
    if (run->pattern == IO_SEQUENTIAL_WRITE) {
        fill_block(slot->buf, run->cfg->seed, slot->block);
        opcode = IORING_OP_WRITE;
    }
    prep_rw(sqe, opcode, run->fd, slot->buf, IO_SIZE, block_offset(run->cfg, slot->block), index);
    run->in_flight++;
}

/* Fills the queue up to the depth; every request queued here shares one submit timestamp. */
static void fill_queue(struct io_run *run)
{
    unsigned first = run->free_count;
    while (run->in_flight < run->depth && run->issued < run->total) {
        struct io_uring_sqe *sqe = ring_get_sqe(&run->ring);
        if (!sqe)
            break;
        queue_request(run, sqe);
    }
    uint64_t t = now_ns();
    for (unsigned i = run->free_count; i < first; i++)
        run->slots[run->free_slots[i]].submit_ns = t;
}

static int overtook_older_request(const struct io_run *run, const struct io_slot *done)
{
    for (unsigned i = 0; i < run->depth; i++)
        if (run->slots[i].busy && run->slots[i].seq < done->seq)
            return 1;
    return 0;
}

static void check_data(struct io_run *run, const struct io_slot *slot)
{
    long bad = first_bad_byte(slot->buf, run->cfg->seed, slot->block);
    if (bad < 0)
        return;
    const uint64_t *words = slot->buf;
    fail(run->o, "data mismatch in block %llu at offset %llu (byte %ld of the block)",
         (unsigned long long)slot->block, (unsigned long long)(block_offset(run->cfg, slot->block) + (uint64_t)bad),
         bad);
    diag(run->o, "block %llu holds seed 0x%llx block %llu; expected seed 0x%llx", (unsigned long long)slot->block,
         (unsigned long long)words[0], (unsigned long long)words[1], (unsigned long long)run->cfg->seed);
}

/* Handles one CQE; returns 0 to go on, -1 after a failure was reported. */
static int complete_request(struct io_run *run, const struct io_uring_cqe *cqe, uint64_t t)
{
    if (cqe->user_data >= run->depth || !run->slots[cqe->user_data].busy) {
        fail(run->o, "completion with unexpected user_data %llu", (unsigned long long)cqe->user_data);
        return -1;
    }
    unsigned index = (unsigned)cqe->user_data;
    struct io_slot *slot = &run->slots[index];
    if (overtook_older_request(run, slot))
        run->out_of_order++;
    slot->busy = 0;
    run->free_slots[run->free_count++] = index;
    run->in_flight--;
    if (run->latency_ns)
        run->latency_ns[run->completed] = t - slot->submit_ns;
    run->completed++;
    uint64_t offset = block_offset(run->cfg, slot->block);
    if (cqe->res != (int)IO_SIZE) {
        const char *what = run->pattern == IO_SEQUENTIAL_WRITE ? "write" : "read";
        if (cqe->res < 0)
            fail(run->o, "%s returned %d (%s) at offset %llu", what, cqe->res, strerror(-cqe->res),
                 (unsigned long long)offset);
        else
            fail(run->o, "short %s: %d of %u bytes at offset %llu", what, cqe->res, IO_SIZE,
                 (unsigned long long)offset);
        return -1;
    }
    if (run->verify)
        check_data(run, slot);
    return run->o->failed ? -1 : 0;
}

/* Waits out requests still in flight after a failure so their buffers can be freed; 0 when all came back. */
static int drain(struct io_run *run)
{
    struct io_uring_cqe cqe;
    while (run->in_flight > 0) {
        if (ring_wait(&run->ring, &cqe, WAIT_LIMIT_MS) != 0)
            return -1;
        if (cqe.user_data < run->depth && run->slots[cqe.user_data].busy) {
            run->slots[cqe.user_data].busy = 0;
            run->in_flight--;
        }
    }
    return 0;
}

static int reap(struct io_run *run)
{
    struct io_uring_cqe cqe;
    uint64_t t = now_ns();
    int reaped = 0;
    while (ring_pop(&run->ring, &cqe)) {
        reaped++;
        if (complete_request(run, &cqe, t) != 0)
            return -1;
    }
    return reaped;
}

static int io_loop(struct io_run *run)
{
    uint64_t start = now_ns();
    uint64_t last_progress = start;
    while (run->completed < run->total) {
        fill_queue(run);
        int ret = ring_submit(&run->ring, 1, WAIT_LIMIT_MS);
        if (ret < 0 && ret != -ETIME && ret != -EINTR) {
            fail(run->o, "io_uring_enter failed: %s", strerror(-ret));
            return -1;
        }
        int reaped = reap(run);
        if (reaped < 0)
            return -1;
        uint64_t t = now_ns();
        if (reaped > 0)
            last_progress = t;
        else if (t - last_progress > (uint64_t)WAIT_LIMIT_MS * 1000000ull) {
            fail(run->o, "no completion within %u ms (%u requests in flight)", WAIT_LIMIT_MS, run->in_flight);
            return -1;
        }
        heartbeat(run->o->name, run->completed, &run->last_heartbeat_ns);
    }
    run->elapsed_ns = now_ns() - start;
    return 0;
}

/*
 * Runs the pattern over an open device. Returns 0 on success, -1 after a reported failure. Buffers are freed
 * only when no request can still be using them.
 */
static int run_io(struct io_run *run)
{
    run->in_flight = 0;
    run->free_count = 0;
    run->last_heartbeat_ns = now_ns();
    if (open_ring_or_fail(&run->ring, run->depth, run->o) < 0)
        return -1;
    char *buffers = alloc_aligned((size_t)run->depth * IO_SIZE);
    if (!buffers) {
        fail(run->o, "out of memory for %u buffers", run->depth);
        ring_close(&run->ring);
        return -1;
    }
    for (unsigned i = 0; i < run->depth; i++) {
        run->slots[i] = (struct io_slot){.buf = buffers + (size_t)i * IO_SIZE};
        run->free_slots[run->free_count++] = run->depth - 1 - i;
    }
    int ret = io_loop(run);
    int quiet = drain(run) == 0;
    ring_close(&run->ring);
    if (quiet)
        free(buffers);
    return ret;
}

/* ------------------------------------------------------------------------------------------------------------
 * Cases
 */

/* IORING_FEAT_* bit names, bit 0 first. */
static const char *feature_names[] = {
    "single_mmap",     "nodrop",  "submit_stable",  "rw_cur_pos", "cur_personality", "fast_poll",   "poll_32bits",
    "sqpoll_nonfixed", "ext_arg", "native_workers", "rsrc_tags",  "cqe_skip",        "linked_file",
};

static void report_features(struct outcome *o, unsigned features)
{
    char names[LINE_LEN] = "";
    size_t used = 0;
    for (unsigned bit = 0; bit < sizeof feature_names / sizeof feature_names[0]; bit++)
        if (features & (1u << bit))
            used += (size_t)snprintf(names + used, sizeof names - used, " %s", feature_names[bit]);
    diag(o, "features:%s", names);
}

/* Asks the kernel which opcodes it supports (IORING_REGISTER_PROBE) and checks the ones this probe uses. */
static void check_opcodes(struct ring *r, struct outcome *o)
{
    static const struct {
        int opcode;
        const char *name;
    } needed[] = {
        {IORING_OP_NOP, "NOP"},
        {IORING_OP_READ, "READ"},
        {IORING_OP_WRITE, "WRITE"},
        {IORING_OP_TIMEOUT, "TIMEOUT"},
        {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
    };
    size_t size = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *probe = calloc(1, size);
    if (!probe)
        return;
    int ret = uring_register(r->fd, IORING_REGISTER_PROBE, probe, 256);
    if (ret < 0) {
        diag(o, "IORING_REGISTER_PROBE failed: %s", strerror(-ret));
        free(probe);
        return;
    }
    unsigned supported = 0;
    for (unsigned i = 0; i < probe->ops_len; i++)
        supported += (probe->ops[i].flags & IO_URING_OP_SUPPORTED) != 0;
    metric(o, "opcodes", "count", "%u", supported);
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        int op = needed[i].opcode;
        if (op >= probe->ops_len || !(probe->ops[op].flags & IO_URING_OP_SUPPORTED))
            fail(o, "opcode %s not supported", needed[i].name);
    }
    free(probe);
}

static void case_setup(struct config *cfg, struct outcome *o)
{
    (void)cfg;
    struct ring r;
    if (open_ring_or_fail(&r, 8, o) < 0)
        return;
    metric(o, "features", "flags", "0x%x", r.features);
    metric(o, "sq_entries", "count", "%u", r.sq_entries);
    metric(o, "cq_entries", "count", "%u", r.cq_entries);
    report_features(o, r.features);
    if (!(r.features & IORING_FEAT_SINGLE_MMAP))
        diag(o, "IORING_FEAT_SINGLE_MMAP missing: rings mapped separately");
    if (!(r.features & IORING_FEAT_NODROP))
        diag(o, "IORING_FEAT_NODROP missing: completions may be dropped on overflow");
    check_opcodes(&r, o);
    ring_close(&r);
}

/* Submits one batch of NOPs and checks each completes once with res 0. Returns 0 or -1 after a failure. */
static int nop_round(struct ring *r, struct outcome *o, unsigned char *seen)
{
    memset(seen, 0, NOP_BATCH);
    for (unsigned i = 0; i < NOP_BATCH; i++)
        prep_nop(ring_get_sqe(r), i);
    struct io_uring_cqe cqe;
    for (unsigned done = 0; done < NOP_BATCH; done++) {
        int ret = ring_wait(r, &cqe, WAIT_LIMIT_MS);
        if (ret < 0) {
            fail(o, "%u of %u NOPs completed: %s", done, NOP_BATCH, strerror(-ret));
            return -1;
        }
        if (cqe.user_data >= NOP_BATCH || seen[cqe.user_data]) {
            fail(o, "NOP completion with unexpected or repeated user_data %llu", (unsigned long long)cqe.user_data);
            return -1;
        }
        seen[cqe.user_data] = 1;
        if (cqe.res != 0) {
            fail(o, "NOP %llu completed with res %d", (unsigned long long)cqe.user_data, cqe.res);
            return -1;
        }
    }
    return 0;
}

static void case_nop_batch(struct config *cfg, struct outcome *o)
{
    struct ring r;
    if (open_ring_or_fail(&r, NOP_BATCH, o) < 0)
        return;
    unsigned char seen[NOP_BATCH];
    uint64_t last_heartbeat = now_ns();
    uint64_t start = now_ns();
    unsigned rounds = 0;
    while (rounds < cfg->nop_rounds && nop_round(&r, o, seen) == 0) {
        rounds++;
        heartbeat(o->name, (uint64_t)rounds * NOP_BATCH, &last_heartbeat);
    }
    uint64_t elapsed = now_ns() - start;
    ring_close(&r);
    if (o->failed)
        return;
    metric(o, "ops", "count", "%u", rounds * NOP_BATCH);
    metric(o, "iops", "ops/s", "%.0f", (double)rounds * NOP_BATCH * 1e9 / (double)elapsed);
}

/* A pipe whose read end blocks until written: a request that stays pending for as long as the probe wants. */
static int make_pipe(int fds[2], struct outcome *o)
{
    if (pipe2(fds, O_CLOEXEC) != 0) {
        fail(o, "pipe: %s", strerror(errno));
        return -1;
    }
    return 0;
}

#define OOO_NOPS 4u
#define PIPE_READ_TAG 100u

static void check_late_read(struct ring *r, struct outcome *o, int write_fd, char *buf)
{
    static const char message[] = "hil-uring";
    struct io_uring_cqe cqe;
    if (ring_pop(r, &cqe)) {
        fail(o, "completion %llu arrived before the pipe was written", (unsigned long long)cqe.user_data);
        return;
    }
    if (write(write_fd, message, sizeof message - 1) != (ssize_t)(sizeof message - 1)) {
        fail(o, "write to pipe: %s", strerror(errno));
        return;
    }
    if (ring_wait_many(r, &cqe, 1, o) < 0)
        return;
    if (cqe.user_data != PIPE_READ_TAG || cqe.res != (int)(sizeof message - 1))
        fail(o, "pipe read completed as user_data %llu res %d", (unsigned long long)cqe.user_data, cqe.res);
    else if (memcmp(buf, message, sizeof message - 1) != 0)
        fail(o, "pipe read returned the wrong bytes");
}

static void case_out_of_order(struct config *cfg, struct outcome *o)
{
    (void)cfg;
    int fds[2];
    struct ring r;
    if (make_pipe(fds, o) < 0)
        return;
    if (open_ring_or_fail(&r, 16, o) < 0)
        goto close_pipe;
    char buf[64] = {0};
    prep_rw(ring_get_sqe(&r), IORING_OP_READ, fds[0], buf, sizeof buf, 0, PIPE_READ_TAG);
    for (unsigned i = 0; i < OOO_NOPS; i++)
        prep_nop(ring_get_sqe(&r), i + 1);
    struct io_uring_cqe cqes[OOO_NOPS];
    if (ring_wait_many(&r, cqes, OOO_NOPS, o) < 0)
        goto close_ring;
    unsigned overtaking = 0;
    for (unsigned i = 0; i < OOO_NOPS; i++) {
        if (cqes[i].user_data == PIPE_READ_TAG)
            fail(o, "pipe read completed (res %d) before the pipe was written", cqes[i].res);
        else if (cqes[i].res != 0)
            fail(o, "NOP %llu completed with res %d", (unsigned long long)cqes[i].user_data, cqes[i].res);
        else
            overtaking++;
    }
    metric(o, "out_of_order_completions", "count", "%u", overtaking);
    if (!o->failed)
        check_late_read(&r, o, fds[1], buf);
close_ring:
    ring_close(&r); /* closing the ring cancels a read still pending after a failure */
close_pipe:
    close(fds[0]);
    close(fds[1]);
}

static void case_odirect_write_read(struct config *cfg, struct outcome *o)
{
    int fd = open_device(cfg, o);
    if (fd < 0)
        return;
    struct io_run run = {.cfg = cfg, .o = o, .fd = fd, .depth = 32, .total = scratch_blocks(cfg)};
    if (run.total < run.depth)
        run.depth = (unsigned)run.total;
    run.pattern = IO_SEQUENTIAL_WRITE;
    if (run_io(&run) == 0) {
        double mib = (double)run.total * IO_SIZE / (1024.0 * 1024.0);
        metric(o, "write_mib_s", "MiB/s", "%.1f", mib * 1e9 / (double)run.elapsed_ns);
        run.pattern = IO_SEQUENTIAL_VERIFY;
        run.issued = run.completed = 0;
        run.verify = 1;
        if (run_io(&run) == 0)
            metric(o, "read_mib_s", "MiB/s", "%.1f", mib * 1e9 / (double)run.elapsed_ns);
    }
    metric(o, "blocks", "count", "%llu", (unsigned long long)run.total);
    diag(o, "seed 0x%llx, blocks at %llu..%llu", (unsigned long long)cfg->seed,
         (unsigned long long)cfg->scratch_offset, (unsigned long long)(cfg->scratch_offset + cfg->scratch_size));
    cfg->scratch_written = !o->failed;
    close(fd);
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double percentile_us(const uint64_t *sorted, uint64_t count, unsigned percent)
{
    return (double)sorted[(count - 1) * percent / 100] / 1000.0;
}

static void report_depth_metrics(struct outcome *o, struct io_run *run)
{
    qsort(run->latency_ns, run->total, sizeof(uint64_t), compare_u64);
    metric(o, "iops", "ops/s", "%.0f", (double)run->total * 1e9 / (double)run->elapsed_ns);
    metric(o, "lat_p50_us", "us", "%.1f", percentile_us(run->latency_ns, run->total, 50));
    metric(o, "lat_p99_us", "us", "%.1f", percentile_us(run->latency_ns, run->total, 99));
    metric(o, "lat_max_us", "us", "%.1f", percentile_us(run->latency_ns, run->total, 100));
    metric(o, "ooo", "count", "%llu", (unsigned long long)run->out_of_order);
    metric(o, "ops", "count", "%llu", (unsigned long long)run->total);
}

static void run_depth(struct config *cfg, struct outcome *o, unsigned depth)
{
    int fd = open_device(cfg, o);
    if (fd < 0)
        return;
    struct io_run run = {.cfg = cfg, .o = o, .fd = fd, .depth = depth, .total = cfg->ops};
    run.pattern = IO_RANDOM_READ;
    run.verify = cfg->scratch_written;
    run.random_state = cfg->seed ^ depth;
    run.latency_ns = calloc(run.total, sizeof(uint64_t));
    if (!run.latency_ns)
        fail(o, "out of memory for %llu latencies", (unsigned long long)run.total);
    else if (run_io(&run) == 0)
        report_depth_metrics(o, &run);
    if (!run.verify)
        diag(o, "data not verified: odirect_write_read did not fill the scratch region");
    free(run.latency_ns);
    close(fd);
}

#define CANCEL_TARGET_TAG 1u
#define CANCEL_TAG 2u
#define CANCEL_MISSING_TAG 3u

static void check_cancel_results(struct outcome *o, const struct io_uring_cqe *cqes, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        int res = cqes[i].res;
        switch (cqes[i].user_data) {
        case CANCEL_TARGET_TAG:
            if (res != -ECANCELED && res != -EINTR)
                fail(o, "cancelled read completed with %d, expected -ECANCELED", res);
            break;
        case CANCEL_TAG:
            if (res != 0)
                fail(o, "ASYNC_CANCEL completed with %d (%s), expected 0", res, strerror(-res));
            break;
        case CANCEL_MISSING_TAG:
            if (res != -ENOENT)
                fail(o, "ASYNC_CANCEL of an unknown user_data completed with %d, expected -ENOENT", res);
            break;
        default:
            fail(o, "unexpected completion user_data %llu", (unsigned long long)cqes[i].user_data);
        }
    }
}

static void case_cancel(struct config *cfg, struct outcome *o)
{
    (void)cfg;
    int fds[2];
    struct ring r;
    if (make_pipe(fds, o) < 0)
        return;
    if (open_ring_or_fail(&r, 8, o) < 0)
        goto close_pipe;
    char buf[16];
    prep_rw(ring_get_sqe(&r), IORING_OP_READ, fds[0], buf, sizeof buf, 0, CANCEL_TARGET_TAG);
    int ret = ring_submit(&r, 0, 0);
    if (ret != 1) {
        fail(o, "submitting the pipe read returned %d", ret);
        goto close_ring;
    }
    struct io_uring_sqe *sqe = ring_get_sqe(&r);
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->addr = CANCEL_TARGET_TAG;
    sqe->user_data = CANCEL_TAG;
    sqe = ring_get_sqe(&r);
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->addr = 0xdead;
    sqe->user_data = CANCEL_MISSING_TAG;
    uint64_t start = now_ns();
    struct io_uring_cqe cqes[3];
    if (ring_wait_many(&r, cqes, 3, o) == 0) {
        metric(o, "elapsed_us", "us", "%.1f", (double)(now_ns() - start) / 1000.0);
        check_cancel_results(o, cqes, 3);
    }
close_ring:
    ring_close(&r);
close_pipe:
    close(fds[0]);
    close(fds[1]);
}

#define LINK_WRITE_TAG 1u
#define LINK_READ_TAG 2u
#define BROKEN_HEAD_TAG 3u
#define BROKEN_TAIL_TAG 4u

/* A descriptor number that is certainly not open: one just closed. */
static int closed_fd(void)
{
    int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 1023;
    close(fd);
    return fd;
}

/* A chain whose head fails (read on a closed fd): the linked NOP must be cancelled, not run. */
static void check_broken_chain(struct outcome *o)
{
    struct ring r;
    if (open_ring_or_fail(&r, 4, o) < 0)
        return;
    static char buf[64];
    struct io_uring_sqe *head = ring_get_sqe(&r);
    prep_rw(head, IORING_OP_READ, closed_fd(), buf, sizeof buf, 0, BROKEN_HEAD_TAG);
    head->flags |= IOSQE_IO_LINK;
    prep_nop(ring_get_sqe(&r), BROKEN_TAIL_TAG);
    struct io_uring_cqe cqes[2];
    if (ring_wait_many(&r, cqes, 2, o) == 0) {
        for (unsigned i = 0; i < 2; i++) {
            if (cqes[i].user_data == BROKEN_HEAD_TAG && cqes[i].res >= 0)
                fail(o, "read on a closed fd succeeded (%d)", cqes[i].res);
            if (cqes[i].user_data == BROKEN_TAIL_TAG && cqes[i].res != -ECANCELED)
                fail(o, "NOP linked to a failed read completed with %d, expected -ECANCELED", cqes[i].res);
        }
    }
    ring_close(&r);
}

static void check_linked_results(struct outcome *o, const struct io_uring_cqe *cqes, const void *out, const void *in)
{
    if (cqes[0].user_data != LINK_WRITE_TAG || cqes[1].user_data != LINK_READ_TAG)
        fail(o, "linked completions arrived as %llu, %llu; expected the write then the read",
             (unsigned long long)cqes[0].user_data, (unsigned long long)cqes[1].user_data);
    for (unsigned i = 0; i < 2; i++)
        if (cqes[i].res != (int)IO_SIZE)
            fail(o, "linked %s returned %d", cqes[i].user_data == LINK_WRITE_TAG ? "write" : "read", cqes[i].res);
    if (!o->failed && memcmp(out, in, IO_SIZE) != 0)
        fail(o, "the linked read did not return what the linked write stored");
}

/* Write a block then read it back in one linked chain; the read may only start once the write completed. */
static void check_write_read_chain(struct config *cfg, struct outcome *o)
{
    int fd = open_device(cfg, o);
    if (fd < 0)
        return;
    struct ring r;
    char *bufs = alloc_aligned(2 * IO_SIZE);
    if (!bufs || open_ring_or_fail(&r, 4, o) < 0) {
        if (!bufs)
            fail(o, "out of memory");
        free(bufs);
        close(fd);
        return;
    }
    uint64_t block = scratch_blocks(cfg) - 1;
    fill_block(bufs, cfg->seed ^ 0x4c494e4bull, block); /* a seed of its own: stale data cannot pass */
    struct io_uring_sqe *write_sqe = ring_get_sqe(&r);
    prep_rw(write_sqe, IORING_OP_WRITE, fd, bufs, IO_SIZE, block_offset(cfg, block), LINK_WRITE_TAG);
    write_sqe->flags |= IOSQE_IO_LINK;
    prep_rw(ring_get_sqe(&r), IORING_OP_READ, fd, bufs + IO_SIZE, IO_SIZE, block_offset(cfg, block),
            LINK_READ_TAG);
    struct io_uring_cqe cqes[2];
    int done = ring_wait_many(&r, cqes, 2, o) == 0;
    if (done)
        check_linked_results(o, cqes, bufs, bufs + IO_SIZE);
    ring_close(&r);
    if (done)
        free(bufs);
    close(fd);
    cfg->scratch_written = 0; /* one block now holds another seed's data */
}

static void case_linked(struct config *cfg, struct outcome *o)
{
    check_broken_chain(o);
    check_write_read_chain(cfg, o);
}

#define TIMEOUT_TAG 1u
#define TIMEOUT_NOP_TAG 2u
#define TIMEOUT_MS 50u

/* A pure timeout must end with -ETIME, and not before its time. */
static void check_plain_timeout(struct outcome *o)
{
    struct ring r;
    if (open_ring_or_fail(&r, 4, o) < 0)
        return;
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = TIMEOUT_MS * 1000000ll};
    struct io_uring_sqe *sqe = ring_get_sqe(&r);
    sqe->opcode = IORING_OP_TIMEOUT;
    sqe->addr = (uint64_t)(uintptr_t)&ts;
    sqe->len = 1;
    sqe->user_data = TIMEOUT_TAG;
    uint64_t start = now_ns();
    struct io_uring_cqe cqe;
    if (ring_wait_many(&r, &cqe, 1, o) == 0) {
        double elapsed_ms = (double)(now_ns() - start) / 1e6;
        metric(o, "elapsed_ms", "ms", "%.1f", elapsed_ms);
        if (cqe.res != -ETIME)
            fail(o, "%u ms timeout completed with %d, expected -ETIME", TIMEOUT_MS, cqe.res);
        else if (elapsed_ms < TIMEOUT_MS)
            fail(o, "%u ms timeout fired after %.1f ms", TIMEOUT_MS, elapsed_ms);
    }
    ring_close(&r);
}

/* A timeout with count=1 completes with 0 as soon as one other request (a NOP) completes. */
static void check_counted_timeout(struct outcome *o)
{
    struct ring r;
    if (open_ring_or_fail(&r, 4, o) < 0)
        return;
    struct __kernel_timespec ts = {.tv_sec = 5, .tv_nsec = 0};
    struct io_uring_sqe *sqe = ring_get_sqe(&r);
    sqe->opcode = IORING_OP_TIMEOUT;
    sqe->addr = (uint64_t)(uintptr_t)&ts;
    sqe->len = 1;
    sqe->off = 1;
    sqe->user_data = TIMEOUT_TAG;
    prep_nop(ring_get_sqe(&r), TIMEOUT_NOP_TAG);
    uint64_t start = now_ns();
    struct io_uring_cqe cqes[2];
    if (ring_wait_many(&r, cqes, 2, o) == 0) {
        metric(o, "counted_elapsed_ms", "ms", "%.1f", (double)(now_ns() - start) / 1e6);
        for (unsigned i = 0; i < 2; i++) {
            if (cqes[i].user_data == TIMEOUT_TAG && cqes[i].res != 0)
                fail(o, "timeout with count 1 completed with %d after a NOP, expected 0", cqes[i].res);
            if (cqes[i].user_data == TIMEOUT_NOP_TAG && cqes[i].res != 0)
                fail(o, "NOP completed with %d", cqes[i].res);
        }
    }
    ring_close(&r);
}

static void case_timeout(struct config *cfg, struct outcome *o)
{
    (void)cfg;
    check_plain_timeout(o);
    check_counted_timeout(o);
}

/* ------------------------------------------------------------------------------------------------------------
 * Driver: the case table, the per-case alarm guard, the command line
 */

struct probe_case {
    char name[32];
    void (*run)(struct config *, struct outcome *);
    unsigned depth; /* for depth_N cases */
};

#define MAX_CASES (8 + MAX_DEPTHS)

static char timeout_message[2 * LINE_LEN];
static size_t timeout_message_len;

/* The guard behind every bounded wait: if a case outlives it, say so in the protocol and stop. */
static void on_alarm(int signo)
{
    (void)signo;
    ssize_t ignored = write(STDOUT_FILENO, timeout_message, timeout_message_len);
    (void)ignored;
    _exit(1);
}

static void arm_guard(unsigned number, const char *name, unsigned seconds)
{
    fflush(stdout);
    int len = snprintf(timeout_message, sizeof timeout_message,
                       "not ok %u %s # timed out after %u s\n# probe aborted\n", number, name, seconds);
    timeout_message_len = len < 0 ? 0 : (size_t)len;
    alarm(seconds);
}

static void add_case(struct probe_case *cases, unsigned *count, const char *name,
                     void (*run)(struct config *, struct outcome *))
{
    snprintf(cases[*count].name, sizeof cases[*count].name, "%s", name);
    cases[*count].run = run;
    cases[*count].depth = 0;
    (*count)++;
}

static unsigned build_cases(const struct config *cfg, struct probe_case *cases)
{
    unsigned count = 0;
    add_case(cases, &count, "setup", case_setup);
    add_case(cases, &count, "nop_batch", case_nop_batch);
    add_case(cases, &count, "out_of_order", case_out_of_order);
    add_case(cases, &count, "odirect_write_read", case_odirect_write_read);
    for (unsigned i = 0; i < cfg->depth_count; i++) {
        snprintf(cases[count].name, sizeof cases[count].name, "depth_%u", cfg->depths[i]);
        cases[count].run = NULL;
        cases[count].depth = cfg->depths[i];
        count++;
    }
    add_case(cases, &count, "cancel", case_cancel);
    add_case(cases, &count, "linked", case_linked);
    add_case(cases, &count, "timeout", case_timeout);
    return count;
}

static int run_case(struct config *cfg, const struct probe_case *c, unsigned number)
{
    static struct outcome o;
    memset(&o, 0, sizeof o);
    o.name = c->name;
    arm_guard(number, c->name, cfg->case_timeout_s);
    if (c->run)
        c->run(cfg, &o);
    else
        run_depth(cfg, &o, c->depth);
    alarm(0);
    print_outcome(number, &o);
    return o.failed;
}

static void print_header(const struct config *cfg, const struct probe_case *cases, unsigned count)
{
    printf("KTAP version 1\n1..%u\n", count);
    printf("# probe %s %s %s\n", PROBE_NAME, PROBE_VERSION, PROBE_OS);
    printf("# cases");
    for (unsigned i = 0; i < count; i++)
        printf(" %s", cases[i].name);
    printf("\n");
    struct utsname uts;
    if (uname(&uts) == 0)
        printf("# uname %s %s %s\n", uts.sysname, uts.release, uts.machine);
    printf("# device %s scratch %llu+%llu seed 0x%llx ops %u\n", cfg->device ? cfg->device : "(none)",
           (unsigned long long)cfg->scratch_offset, (unsigned long long)cfg->scratch_size,
           (unsigned long long)cfg->seed, cfg->ops);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: %s --device PATH [--scratch-offset BYTES] [--scratch-size BYTES] [--depths 1,8,32,64]\n"
                 "       [--ops N] [--quick] [--seed N] [--case-timeout SECONDS]\n"
                 "Runs io_uring cases and prints KTAP-like results (hil/uring_probe/PROTOCOL.md).\n"
                 "The scratch region of the device is overwritten.\n",
            PROBE_NAME);
}

static int parse_u64(const char *text, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 0);
    if (errno || end == text || *end || text[0] == '-')
        return -1;
    *out = value;
    return 0;
}

static int parse_depths(const char *text, struct config *cfg)
{
    char copy[256];
    snprintf(copy, sizeof copy, "%s", text);
    cfg->depth_count = 0;
    for (char *save = NULL, *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        uint64_t depth;
        if (parse_u64(item, &depth) || depth < 1 || depth > MAX_DEPTH || cfg->depth_count >= MAX_DEPTHS)
            return -1;
        cfg->depths[cfg->depth_count++] = (unsigned)depth;
    }
    return cfg->depth_count ? 0 : -1;
}

static uint64_t default_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return mix64(((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ (uint64_t)getpid());
}

static int check_config(const struct config *cfg)
{
    if (cfg->scratch_offset % IO_SIZE || cfg->scratch_size % IO_SIZE || cfg->scratch_size == 0) {
        fprintf(stderr, "%s: --scratch-offset and --scratch-size must be non-zero multiples of %u\n", PROBE_NAME,
                IO_SIZE);
        return -1;
    }
    if (cfg->ops == 0 || cfg->case_timeout_s == 0) {
        fprintf(stderr, "%s: --ops and --case-timeout must be positive\n", PROBE_NAME);
        return -1;
    }
    return 0;
}

enum { OPT_DEVICE = 256, OPT_OFFSET, OPT_SIZE, OPT_DEPTHS, OPT_OPS, OPT_QUICK, OPT_SEED, OPT_TIMEOUT, OPT_HELP };

static int parse_option(int opt, const char *arg, struct config *cfg, int *quick)
{
    uint64_t value = 0;
    switch (opt) {
    case OPT_DEVICE:
        cfg->device = arg;
        return 0;
    case OPT_OFFSET:
        return parse_u64(arg, &cfg->scratch_offset);
    case OPT_SIZE:
        return parse_u64(arg, &cfg->scratch_size);
    case OPT_DEPTHS:
        return parse_depths(arg, cfg);
    case OPT_OPS:
    case OPT_TIMEOUT:
        if (parse_u64(arg, &value) || value > 100000000u)
            return -1;
        *(opt == OPT_OPS ? &cfg->ops : &cfg->case_timeout_s) = (unsigned)value;
        return 0;
    case OPT_QUICK:
        *quick = 1;
        return 0;
    case OPT_SEED:
        return parse_u64(arg, &cfg->seed);
    default:
        return -1;
    }
}

/* Returns 0, or the exit status to leave with (0 after --help, 2 on a usage error). */
static int parse_args(int argc, char **argv, struct config *cfg, int *exit_status)
{
    /* In the order of the OPT_* values: error messages index this table by option. */
    static const struct option options[] = {
        {"device", required_argument, NULL, OPT_DEVICE},
        {"scratch-offset", required_argument, NULL, OPT_OFFSET},
        {"scratch-size", required_argument, NULL, OPT_SIZE},
        {"depths", required_argument, NULL, OPT_DEPTHS},
        {"ops", required_argument, NULL, OPT_OPS},
        {"quick", no_argument, NULL, OPT_QUICK},
        {"seed", required_argument, NULL, OPT_SEED},
        {"case-timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int quick = 0;
    int ops_given = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == OPT_HELP) {
            usage(stdout);
            *exit_status = 0;
            return -1;
        }
        ops_given |= opt == OPT_OPS;
        if (parse_option(opt, optarg, cfg, &quick) != 0) {
            if (opt != '?')
                fprintf(stderr, "%s: bad value for --%s: %s\n", PROBE_NAME, options[opt - OPT_DEVICE].name, optarg);
            usage(stderr);
            *exit_status = 2;
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument %s\n", PROBE_NAME, argv[optind]);
        *exit_status = 2;
        return -1;
    }
    if (quick) {
        cfg->nop_rounds /= QUICK_DIVISOR;
        if (!ops_given)
            cfg->ops /= QUICK_DIVISOR;
    }
    if (check_config(cfg) != 0) {
        *exit_status = 2;
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct config cfg = {
        .scratch_offset = 1024 * 1024,
        .scratch_size = 4 * 1024 * 1024,
        .depths = {1, 8, 32, 64},
        .depth_count = 4,
        .ops = 5000,
        .nop_rounds = 100,
        .case_timeout_s = 60,
        .seed = default_seed(),
    };
    int exit_status = 0;
    if (parse_args(argc, argv, &cfg, &exit_status) != 0)
        return exit_status;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);

    static struct probe_case cases[MAX_CASES];
    unsigned count = build_cases(&cfg, cases);
    print_header(&cfg, cases, count);
    int failures = 0;
    for (unsigned i = 0; i < count; i++)
        failures += run_case(&cfg, &cases[i], i + 1);
    return failures ? 1 : 0;
}
