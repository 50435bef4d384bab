/*
 * The NVMe cases: find QEMU's controller on PCI, map BAR0, reset and enable it, Identify, an I/O queue pair,
 * read/verify and write/read back, then completions by interrupt (INTx, MSI-X). Register layout and command
 * fields from the NVM Express Base Specification 1.4; every kernel interface is in hw.c.
 */
#include "hw.h"
#include "nvme.h"
#include "pattern.h"

#define NVME_CLASS 0x010802u /* mass storage, non-volatile memory, NVM Express */
#define ADMIN_ENTRIES 32
#define NSID 1
#define CMD_WAIT_NS (5 * NS_PER_S)
#define RW_BLOCKS 16 /* known-content blocks read and verified */
#define WB_BLOCKS 4  /* blocks written and read back, at the end of the disk (overlay only) */
#define IRQ_OPS 16

static struct {
    bool found, mapped, enabled, identified, io_ready;
    u32 bdf;
    u8 irq_line;
    u64 bar_phys, bar_size;
    volatile u32 *regs;
    u32 dstrd;
    u64 cap;
    struct nvme_queue admin, io;
    uint16_t next_cid;
    u8 *page;
    u64 page_phys; /* one 4 KiB DMA page for Identify and synchronous I/O */
    u64 lba_bytes, nsze;
} nv;

bool nvme_ready(void) { return nv.io_ready; }
u64 nvme_lbas_per_block(void) { return DISK_BLOCK / nv.lba_bytes; }

/* ---------------------------------------------------------------- queues */

static void doorbell(uint16_t qid, bool completion, u32 value)
{
    mmio_barrier();
    mmio_write32(nv.regs, nvme_doorbell(qid, completion, nv.dstrd), value);
}

void nvme_submit(struct nvme_queue *q, const struct nvme_sqe *s)
{
    q->sq[q->sq_tail] = *s;
    q->sq_tail = (uint16_t)((q->sq_tail + 1) % q->entries);
    doorbell(q->qid, false, q->sq_tail);
}

bool nvme_poll(struct nvme_queue *q, struct nvme_cqe *out)
{
    volatile struct nvme_cqe *c = &q->cq[q->cq_head];
    if ((c->status & 1) != q->phase)
        return false;
    __asm__ volatile("lfence" ::: "memory");
    *out = *c;
    if (++q->cq_head == q->entries) {
        q->cq_head = 0;
        q->phase ^= 1;
    }
    doorbell(q->qid, true, q->cq_head);
    return true;
}

long nvme_queue_alloc(struct nvme_queue *q, uint16_t qid)
{
    uint16_t entries = qid == 0 ? ADMIN_ENTRIES : NVME_QUEUE_ENTRIES;
    u64 sq_pages = (entries * sizeof(struct nvme_sqe) + 4095) / 4096, phys; /* the CQ fits the page after */
    long addr = dma_alloc(sq_pages + 1, &phys);
    if (is_err(addr))
        return addr;
    q->sq = (volatile struct nvme_sqe *)addr;
    q->sq_phys = phys;
    q->cq = (volatile struct nvme_cqe *)(addr + (long)(sq_pages * 4096));
    q->cq_phys = phys + sq_pages * 4096;
    q->qid = qid;
    q->entries = entries;
    q->sq_tail = q->cq_head = 0;
    q->phase = 1;
    return 0;
}

/* Submit on q and poll for that command's completion; the status word or -ETIMEDOUT. */
static long run_polled(struct nvme_queue *q, struct nvme_sqe *s, struct nvme_cqe *out)
{
    s->cid = nv.next_cid++;
    nvme_submit(q, s);
    u64 deadline = now_ns() + CMD_WAIT_NS;
    while (now_ns() < deadline) {
        if (nvme_poll(q, out)) {
            if (out->cid != s->cid)
                return -(long)EIO;
            return nvme_status(out);
        }
        r_yield();
    }
    return -(long)ETIMEDOUT;
}

long nvme_io_sync(u8 opcode, u64 block, void *buf, u64 buf_phys)
{
    (void)buf;
    struct nvme_sqe s;
    struct nvme_cqe c;
    u64 per = nvme_lbas_per_block();
    nvme_rw(&s, opcode, 0, NSID, block * per, (uint16_t)per, buf_phys);
    long st = run_polled(&nv.io, &s, &c);
    return st > 0 ? -(0x1000 | st) : st;
}

/* ---------------------------------------------------------------- cases */

void case_nvme_pci(void)
{
    u64 seen, t0 = now_ns();
    u32 cmd, now;
    if (!pci_case_enable("NVMe controller", "class 01:08:02", NVME_CLASS, PCI_ANY, &nv.bdf, &seen, &cmd, &now))
        return;
    u32 id = pci_read32(nv.bdf, 0);
    nv.irq_line = (u8)pci_read32(nv.bdf, 0x3c);
    nv.found = true;
    pass();
    metric_u("functions_seen", seen, "count");
    metric_ns_as_us("scan_us", now_ns() - t0);
    diag("NVMe %x:%x at %u:%u.%u (config mechanism #1, ports 0xCF8/0xCFC); command %x -> %x; interrupt line %u",
         (u64)(id & 0xffff), (u64)(id >> 16), (u64)(nv.bdf >> 16), (u64)(nv.bdf >> 11 & 31), (u64)(nv.bdf >> 8 & 7),
         (u64)cmd, (u64)now, (u64)nv.irq_line);
}

void case_nvme_bar_map(void)
{
    if (!need(nv.found, "nvme_pci"))
        return;
    if (!pci_bar(nv.bdf, 0, &nv.bar_phys, &nv.bar_size))
        return fail("BAR0 is not an assigned memory BAR (%x)", (u64)pci_read32(nv.bdf, 0x10));
    long addr = phys_map(nv.bar_phys, nv.bar_size);
    if (is_err(addr))
        return fail("mapping BAR0 %x (%u KiB): %s returned %E", nv.bar_phys, nv.bar_size / 1024, hw_failed_step(),
                    addr);
    nv.regs = (volatile u32 *)addr;
    nv.cap = (u64)mmio_read32(nv.regs, NVME_REG_CAP) | (u64)mmio_read32(nv.regs, NVME_REG_CAP + 4) << 32;
    u32 vs = mmio_read32(nv.regs, NVME_REG_VS);
    if (nv.cap == 0 || nv.cap == ~0ULL || vs == 0 || vs == ~0u)
        return fail("BAR0 mapped at %x but CAP %x VS %x: not the controller's registers", (u64)addr, nv.cap, (u64)vs);
    nv.dstrd = (u32)(nv.cap >> 32 & 0xf);
    nv.mapped = true;
    pass();
    metric_u("bar_kib", nv.bar_size / 1024, "KiB");
    diag("BAR0 phys %x mapped uncached at %x through /scheme/memory/physical@uc; CAP %x, version %u.%u", nv.bar_phys,
         (u64)addr, nv.cap, (u64)(vs >> 16), (u64)(vs >> 8 & 0xff));
}

static bool wait_ready(bool want, u64 timeout_ns)
{
    u64 deadline = now_ns() + timeout_ns;
    while (now_ns() < deadline) {
        u32 csts = mmio_read32(nv.regs, NVME_REG_CSTS);
        if (csts != ~0u && ((csts & NVME_CSTS_RDY) != 0) == want)
            return true;
        r_yield();
    }
    return false;
}

void case_nvme_enable(void)
{
    if (!need(nv.mapped, "nvme_bar_map"))
        return;
    u64 timeout = (nv.cap >> 24 & 0xff) * 500 * NS_PER_MS; /* CAP.TO, in 500 ms units */
    if (timeout == 0)
        timeout = CMD_WAIT_NS;
    u64 t0 = now_ns();
    mmio_write32(nv.regs, NVME_REG_CC, 0);
    if (!wait_ready(false, timeout))
        return fail("reset: CSTS.RDY still 1 %u ms after CC.EN = 0", timeout / NS_PER_MS);
    long r = nvme_queue_alloc(&nv.admin, 0);
    u64 page_phys;
    long page = is_err(r) ? r : dma_alloc(1, &page_phys);
    if (is_err(page))
        return fail("DMA memory for the admin queues: %s returned %E", hw_failed_step(), page);
    nv.page = (u8 *)page;
    nv.page_phys = page_phys;
    mmio_write32(nv.regs, NVME_REG_AQA, nvme_aqa(ADMIN_ENTRIES, ADMIN_ENTRIES));
    mmio_write32(nv.regs, NVME_REG_ASQ, (u32)nv.admin.sq_phys);
    mmio_write32(nv.regs, NVME_REG_ASQ + 4, (u32)(nv.admin.sq_phys >> 32));
    mmio_write32(nv.regs, NVME_REG_ACQ, (u32)nv.admin.cq_phys);
    mmio_write32(nv.regs, NVME_REG_ACQ + 4, (u32)(nv.admin.cq_phys >> 32));
    mmio_write32(nv.regs, NVME_REG_CC, nvme_cc_enable());
    if (!wait_ready(true, timeout))
        return fail("enable: CSTS.RDY not 1 %u ms after CC.EN = 1 (CSTS %x)", timeout / NS_PER_MS,
                    (u64)mmio_read32(nv.regs, NVME_REG_CSTS));
    if (mmio_read32(nv.regs, NVME_REG_CSTS) & NVME_CSTS_CFS)
        return fail("controller fatal status after enable");
    nv.enabled = true;
    pass();
    metric_ns_as_us("enable_us", now_ns() - t0);
    diag("admin SQ at phys %x, CQ at phys %x (from /scheme/memory/zeroed@wb?phys_contiguous + translation), "
         "doorbell stride %u",
         nv.admin.sq_phys, nv.admin.cq_phys, (u64)(4u << nv.dstrd));
}

static long identify(u32 nsid, u32 cns)
{
    struct nvme_sqe s;
    struct nvme_cqe c;
    memset(nv.page, 0, 4096);
    nvme_identify(&s, 0, nsid, cns, nv.page_phys);
    return run_polled(&nv.admin, &s, &c);
}

/* The serial number field is space-padded ASCII; true when it is exactly `want`. */
static bool serial_is(const u8 *field, const char *want)
{
    u64 n = str_len(want);
    for (u64 i = 0; i < 20; i++)
        if (field[i] != (i < n ? (u8)want[i] : ' '))
            return false;
    return true;
}

static void copy_field(char *dst, const u8 *src, u64 len)
{
    u64 n = len;
    while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == 0))
        n--;
    memcpy(dst, src, n);
    dst[n] = 0;
}

void case_nvme_identify(void)
{
    if (!need(nv.enabled, "nvme_enable"))
        return;
    long st = identify(0, NVME_CNS_CONTROLLER);
    if (st != 0)
        return fail("Identify Controller returned %s %x", st < 0 ? "error" : "status", (u64)st);
    static char serial[21], model[41];
    copy_field(serial, nv.page + 4, 20);
    copy_field(model, nv.page + 24, 40);
    u32 nn = *(volatile u32 *)(nv.page + 516);
    if (!serial_is(nv.page + 4, HIL_NVME_SERIAL))
        return fail("Identify Controller: serial '%s', hil configured '%s'", serial, HIL_NVME_SERIAL);
    if ((st = identify(NSID, NVME_CNS_NAMESPACE)) != 0)
        return fail("Identify Namespace 1 returned %s %x", st < 0 ? "error" : "status", (u64)st);
    nv.nsze = *(volatile u64 *)nv.page;
    u32 lbaf = *(volatile u32 *)(nv.page + 128 + 4 * (nv.page[26] & 0xf));
    nv.lba_bytes = 1ULL << (lbaf >> 16 & 0xff);
    u64 bytes = nv.nsze * nv.lba_bytes;
    if (bytes != HIL_NVME_BYTES)
        return fail("Identify Namespace: %u blocks of %u bytes = %u bytes, hil configured %u", nv.nsze, nv.lba_bytes,
                    bytes, (u64)HIL_NVME_BYTES);
    if (nv.lba_bytes > DISK_BLOCK || DISK_BLOCK % nv.lba_bytes)
        return fail("LBA size %u does not divide the disk's 4 KiB blocks", nv.lba_bytes);
    nv.identified = true;
    pass();
    metric_u("namespace_bytes", bytes, "bytes");
    metric_u("lba_bytes", nv.lba_bytes, "bytes");
    diag("serial '%s' model '%s', %u namespace(s); namespace 1: %u LBAs of %u bytes", serial, model, (u64)nn,
         nv.nsze, nv.lba_bytes);
}

static long create_pair(struct nvme_queue *q, uint16_t qid, bool irq, uint16_t vector)
{
    long r = nvme_queue_alloc(q, qid);
    if (is_err(r))
        return r;
    struct nvme_sqe s;
    struct nvme_cqe c;
    nvme_create_cq(&s, 0, qid, q->entries, q->cq_phys, irq, vector);
    long st = run_polled(&nv.admin, &s, &c);
    if (st != 0)
        return st < 0 ? st : -(0x1000 | st);
    nvme_create_sq(&s, 0, qid, q->entries, q->sq_phys, qid);
    st = run_polled(&nv.admin, &s, &c);
    return st == 0 ? 0 : st < 0 ? st : -(0x1000 | st);
}

long nvme_create_queue_pair(struct nvme_queue *q, uint16_t qid) { return create_pair(q, qid, false, 0); }

static void say_status(const char *what, long r)
{
    if (r <= -0x1000)
        fail("%s: NVMe status %x", what, (u64)(-r & 0xfff));
    else
        fail("%s returned %E (%s)", what, r, hw_failed_step());
}

void case_nvme_io_queue(void)
{
    if (!need(nv.identified, "nvme_identify"))
        return;
    long r = create_pair(&nv.io, 1, false, 0);
    if (r != 0)
        return say_status("creating I/O queue pair 1 (polled)", r);
    nv.io_ready = true;
    pass();
    diag("I/O queue 1: %u entries, SQ phys %x, CQ phys %x, completions polled", (u64)nv.io.entries, nv.io.sq_phys,
         nv.io.cq_phys);
}

static u64 disk_blocks(void) { return HIL_NVME_BYTES / DISK_BLOCK; }

void case_nvme_read_verify(void)
{
    if (!need(nv.io_ready, "nvme_io_queue"))
        return;
    u64 t0 = now_ns(), blocks = disk_blocks();
    for (u64 i = 0; i < RW_BLOCKS; i++) {
        u64 block = i < RW_BLOCKS / 2 ? i : (i * 7919) % (blocks - WB_BLOCKS); /* the first ones and a spread */
        memset(nv.page, 0xa5, DISK_BLOCK);
        long r = nvme_io_sync(NVME_CMD_READ, block, nv.page, nv.page_phys);
        if (r != 0)
            return say_status("read", r);
        u64 got = disk_block_check(nv.page, HIL_DISK_SEED);
        if (got != block)
            return fail("block %u: content is not the known pattern (header names block %x)", block, got);
    }
    pass();
    metric_u("blocks", RW_BLOCKS, "count");
    metric_ns_as_us("read_us", (now_ns() - t0) / RW_BLOCKS);
    diag("every byte of %u blocks of 4 KiB matched hil's known content (seed %u)", (u64)RW_BLOCKS,
         (u64)HIL_DISK_SEED);
}

void case_nvme_write_readback(void)
{
    if (case_status("nvme_read_verify") != ST_PASS)
        return skip("needs nvme_read_verify, which did not pass");
    u64 blocks = disk_blocks();
    for (u64 i = 0; i < WB_BLOCKS; i++) {
        u64 block = blocks - WB_BLOCKS + i, target = blocks - 1 - i; /* each gets another block's content */
        disk_block_fill(nv.page, target, HIL_DISK_SEED);
        long r = nvme_io_sync(NVME_CMD_WRITE, block, nv.page, nv.page_phys);
        if (r != 0)
            return say_status("write", r);
        memset(nv.page, 0, DISK_BLOCK);
        if ((r = nvme_io_sync(NVME_CMD_READ, block, nv.page, nv.page_phys)) != 0)
            return say_status("read back", r);
        u64 got = disk_block_check(nv.page, HIL_DISK_SEED);
        if (got != target)
            return fail("block %u read back names block %x, written with block %u's content", block, got, target);
    }
    pass();
    metric_u("blocks", WB_BLOCKS, "count");
    diag("wrote the last %u blocks (the run's qcow2 overlay; the base disk stays unwritten) and read them back",
         (u64)WB_BLOCKS);
}

/* ---------------------------------------------------------------- completions by interrupt */

/* IRQ_OPS reads on q; each waits for the irq handle's count to move before it looks at the CQ. */
static long irq_reads(struct nvme_queue *q, long fd, bool ack, u64 *interrupts, u64 *ops)
{
    u64 base = 0, count = 0;
    irq_count(fd, &base);
    if (ack)
        irq_ack(fd, base);
    count = base;
    for (u64 i = 0; i < IRQ_OPS; i++) {
        struct nvme_sqe s;
        struct nvme_cqe c;
        u64 per = nvme_lbas_per_block();
        nvme_rw(&s, NVME_CMD_READ, (uint16_t)(0x100 + i), NSID, i * per, (uint16_t)per, nv.page_phys);
        u64 before = count, deadline = now_ns() + 2 * NS_PER_S;
        nvme_submit(q, &s);
        while (count == before && now_ns() < deadline) {
            long n = irq_count(fd, &count);
            if (is_err(n))
                return n;
            if (count == before)
                r_yield();
        }
        if (count == before)
            return -(long)ETIMEDOUT;
        while (!nvme_poll(q, &c) && now_ns() < deadline)
            r_yield();
        if (nvme_status(&c) != 0 || disk_block_check(nv.page, HIL_DISK_SEED) != i)
            return -(long)EIO;
        if (ack)
            irq_ack(fd, count); /* unmasks the line (kernel irq scheme kwrite) */
        (*ops)++;
    }
    *interrupts = count - base;
    return 0;
}

static struct nvme_queue intx_q, msix_q;

/* The end of an interrupt case: irq_reads' result as a verdict, the count as a metric. */
static bool irq_verdict(const char *kind, long r, u64 interrupts, u64 ops, u64 t0)
{
    if (r == -(long)ETIMEDOUT)
        fail("%s: read %u saw no interrupt within 2 s (%u interrupts before)", kind, ops, interrupts);
    else if (r != 0)
        fail("%s: read %u failed: %E", kind, ops, r);
    if (r != 0)
        return false;
    pass();
    metric_u("interrupts", interrupts, "count");
    metric_u("ops", ops, "count");
    metric_ns_as_us("op_us", (now_ns() - t0) / ops);
    return true;
}

void case_nvme_irq_intx(void)
{
    if (!need(nv.io_ready, "nvme_io_queue"))
        return;
    if (nv.irq_line == 0 || nv.irq_line >= 16)
        return skip("the firmware assigned no legacy interrupt line (config 0x3c = %u)", (u64)nv.irq_line);
    const char *path;
    long fd = irq_open_line(nv.irq_line, &path);
    if (is_err(fd))
        return skip("open %s returned %E", path, fd);
    long r = create_pair(&intx_q, 2, true, 0);
    if (r != 0)
        return say_status("creating I/O queue pair 2 (interrupts on, vector 0)", r);
    u64 interrupts = 0, ops = 0, t0 = now_ns();
    r = irq_reads(&intx_q, fd, true, &interrupts, &ops);
    if (irq_verdict("INTx", r, interrupts, ops, t0))
        diag("legacy line %u through %s (IOAPIC, masked by the kernel until our acknowledgement)", (u64)nv.irq_line, path);
}

void case_nvme_irq_msix(void)
{
    if (!need(nv.io_ready, "nvme_io_queue"))
        return;
    u32 cap = pci_find_cap(nv.bdf, 0x11);
    if (!cap)
        return skip("the controller has no MSI-X capability");
    u32 table = pci_read32(nv.bdf, cap + 4);
    if ((table & 7) != 0)
        return skip("MSI-X table in BAR%u, only BAR0 is mapped", (u64)(table & 7));
    u64 irq = 0;
    long fd = irq_alloc_vector(&irq);
    if (is_err(fd))
        return skip("no vector: open /scheme/irq/cpu-00/N with O_CREAT returned %E", fd);
    volatile u32 *entry = nv.regs + ((table & ~7u) + 16) / 4; /* entry 1 (entry 0 stays masked: admin) */
    nv.regs[(table & ~7u) / 4 + 3] = 1;
    entry[0] = 0xfee00000u; /* LAPIC of APIC id 0 (the BSP under QEMU), physical destination */
    entry[1] = 0;
    entry[2] = (u32)(irq + 32); /* the kernel's vector for irq N is N + 32 (src/scheme/irq.rs) */
    entry[3] = 0;
    u32 ctrl = pci_read32(nv.bdf, cap);
    pci_write32(nv.bdf, cap, (ctrl & ~(1u << 30)) | 1u << 31); /* enable, function unmasked */
    pci_write32(nv.bdf, 4, pci_read32(nv.bdf, 4) | 1u << 10); /* INTx off */
    long r = create_pair(&msix_q, 3, true, 1);
    if (r != 0)
        return say_status("creating I/O queue pair 3 (MSI-X vector 1)", r);
    u64 interrupts = 0, ops = 0, t0 = now_ns();
    r = irq_reads(&msix_q, fd, false, &interrupts, &ops);
    if (irq_verdict("MSI-X", r, interrupts, ops, t0))
        diag("MSI-X entry 1 -> vector %u (irq scheme cpu-00/%u, reserved with O_CREAT)", irq + 32, irq);
}
