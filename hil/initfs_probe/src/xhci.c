/*
 * The xHCI cases (variant redox-xhci): find QEMU's xHCI (qemu-xhci or nec-usb-xhci) on PCI, map BAR0, read its
 * capability registers, halt and reset it, read every root-hub port's status (connect, speed), counting the
 * devices hil attached, then a No-Op through command and event rings. Then every connected device enumerated
 * (port reset, Enable Slot, Address Device, GET_DESCRIPTOR(DEVICE) on EP0, its ids checked against those hil
 * attached), a known-content block read from the usb-storage over Bulk-Only Transport (Configure Endpoint,
 * SET_CONFIGURATION, CBW / data / CSW on the bulk rings), and that device unplugged and plugged back by the host
 * when the probe asks on the console ("hil-request: unplug" / "replug"). Events are polled, not interrupts.
 * Register layout from the eXtensible Host Controller Interface spec 1.2 (5.3 capability, 5.4 operational, 5.5
 * runtime registers, 6.2 contexts, 6.4 TRBs), USB 2.0 chapter 9 (requests, descriptors), USB Mass Storage
 * Bulk-Only Transport 1.0 (CBW, CSW); every kernel interface in hw.c.
 */
#include "hw.h"
#include "pattern.h"

#define XHCI_CLASS 0x0c0330u /* serial bus, USB, xHCI */
#define USBCMD_RS 1u
#define USBCMD_HCRST 2u
#define USBSTS_HCH 1u
#define USBSTS_CNR (1u << 11)
#define PORTSC_CCS 1u

static struct {
    bool found, mapped, reset;
    u32 bdf, vendor_device;
    volatile u32 *regs, *op;
    u32 caplength, hcsparams1, version;
} x;

void case_xhci_pci(void)
{
    u64 seen;
    u32 before, after;
    if (!pci_case_enable("xHCI controller", "class 0c:03:30", XHCI_CLASS, PCI_ANY, &x.bdf, &seen, &before, &after))
        return;
    x.vendor_device = pci_read32(x.bdf, 0);
    x.found = true;
    pass();
    metric_u("functions_seen", seen, "count");
    diag("xHCI %x:%x at %u:%u.%u (%s)", (u64)(x.vendor_device & 0xffff), (u64)(x.vendor_device >> 16),
         (u64)(x.bdf >> 16), (u64)(x.bdf >> 11 & 31), (u64)(x.bdf >> 8 & 7), HIL_XHCI_MODEL);
}

void case_xhci_caps(void)
{
    if (!need(x.found, "xhci_pci"))
        return;
    u64 phys, size;
    if (!pci_bar(x.bdf, 0, &phys, &size))
        return fail("xHCI: BAR0 is not an assigned memory BAR (%x)", (u64)pci_read32(x.bdf, 0x10));
    long addr = phys_map(phys, size);
    if (is_err(addr))
        return fail("xHCI: mapping BAR0 %x (%u KiB): %s returned %E", phys, size / 1024, hw_failed_step(), addr);
    x.regs = (volatile u32 *)addr;
    u32 cap0 = mmio_read32(x.regs, 0);
    x.caplength = cap0 & 0xff;
    x.version = cap0 >> 16;
    x.hcsparams1 = mmio_read32(x.regs, 4);
    if (x.caplength < 0x20 || x.version < 0x0090 || (x.hcsparams1 >> 24) == 0)
        return fail("xHCI: CAPLENGTH %x HCIVERSION %x HCSPARAMS1 %x: not an xHCI's registers", (u64)x.caplength,
                    (u64)x.version, (u64)x.hcsparams1);
    x.op = x.regs + x.caplength / 4;
    x.mapped = true;
    pass();
    metric_u("ports", x.hcsparams1 >> 24, "count");
    metric_u("slots", x.hcsparams1 & 0xff, "count");
    metric_u("interrupters", x.hcsparams1 >> 8 & 0x7ff, "count");
    diag("BAR0 phys %x (%u KiB) mapped uncached; HCIVERSION %x, CAPLENGTH %u", phys, size / 1024, (u64)x.version,
         (u64)x.caplength);
}

static bool wait_bits(u32 offset, u32 mask, u32 want, u64 timeout_ns)
{
    u64 deadline = now_ns() + timeout_ns;
    while (now_ns() < deadline) {
        if ((mmio_read32(x.op, offset) & mask) == want)
            return true;
        r_yield();
    }
    return false;
}

void case_xhci_reset(void)
{
    if (!need(x.mapped, "xhci_caps"))
        return;
    u64 t0 = now_ns();
    mmio_write32(x.op, 0, mmio_read32(x.op, 0) & ~USBCMD_RS);
    if (!wait_bits(4, USBSTS_HCH, USBSTS_HCH, NS_PER_S))
        return fail("xHCI: USBSTS.HCH not set 1 s after clearing USBCMD.RS");
    mmio_write32(x.op, 0, USBCMD_HCRST);
    if (!wait_bits(0, USBCMD_HCRST, 0, NS_PER_S) || !wait_bits(4, USBSTS_CNR, 0, NS_PER_S))
        return fail("xHCI: reset not done 1 s after USBCMD.HCRST (USBCMD %x USBSTS %x)", (u64)mmio_read32(x.op, 0),
                    (u64)mmio_read32(x.op, 4));
    x.reset = true;
    pass();
    metric_ns_as_us("reset_us", now_ns() - t0);
}

static const char *speed_name(u32 speed)
{
    static const char *names[] = {"none", "full", "low", "high", "super", "super+"};
    return speed < 6 ? names[speed] : "?";
}

void case_xhci_ports(void)
{
    if (!need(x.reset, "xhci_reset"))
        return;
    sleep_ns(20 * NS_PER_MS); /* ports report their devices once the reset settled */
    u32 ports = x.hcsparams1 >> 24 <= 64 ? x.hcsparams1 >> 24 : 64;
    u64 connected = 0;
    for (u32 n = 1; n <= ports; n++)
        connected += mmio_read32(x.op, 0x400 + 0x10 * (n - 1)) & PORTSC_CCS;
    if (connected != HIL_XHCI_DEVICES)
        fail("xHCI: %u of %u ports show a device, hil attached %u", connected, (u64)ports, (u64)HIL_XHCI_DEVICES);
    else
        pass();
    metric_u("connected", connected, "count");
    for (u32 n = 1; n <= ports; n++) { /* after the result line: the case's diagnostics follow it */
        u32 sc = mmio_read32(x.op, 0x400 + 0x10 * (n - 1));
        if (sc & PORTSC_CCS)
            diag("port %u: connected, %s speed (PORTSC %x)", (u64)n, speed_name(sc >> 10 & 0xf), (u64)sc);
    }
}

/* ---------------------------------------------------------------- rings: command, event, transfer */

struct trb {
    u64 param;
    u32 status;
    u32 control; /* bit 0 cycle, bits 10-15 type */
};
_Static_assert(sizeof(struct trb) == 16, "a TRB is 16 bytes");

#define TRB_NORMAL 1
#define TRB_SETUP 2
#define TRB_DATA 3
#define TRB_STATUS 4
#define TRB_LINK 6
#define TRB_ENABLE_SLOT 9
#define TRB_DISABLE_SLOT 10
#define TRB_ADDRESS_DEVICE 11
#define TRB_CONFIGURE_EP 12
#define TRB_NOOP_CMD 23
#define TRB_TRANSFER_EVENT 32
#define TRB_CMD_COMPLETION 33
#define TRB_PORT_CHANGE 34
#define TRB_IOC (1u << 5)
#define TRB_IDT (1u << 6)
#define TRB_DIR_IN (1u << 16)
#define CC_SUCCESS 1
#define CC_SHORT_PACKET 13
#define RING_TRBS 256
#define CMD_WAIT_NS NS_PER_S

/* A producer ring in one DMA page; its last TRB links back to the first and toggles the cycle. */
struct ring {
    volatile struct trb *trb;
    u64 phys;
    u32 index, cycle;
};

static struct {
    bool running;
    volatile u64 *dcbaa;
    volatile u32 *rt, *db;
    struct ring cmd;
    volatile struct trb *ev;
    u64 ev_phys;
    u32 ev_index, ev_cycle;
    u32 csz;               /* context size: 32 or 64 bytes (HCCPARAMS1.CSZ) */
    u64 port_events;       /* ports (bit n-1) a Port Status Change event named */
} rg;

static void write64(volatile u32 *base, u32 offset, u64 value)
{
    mmio_write32(base, offset, (u32)value);
    mmio_write32(base, offset + 4, (u32)(value >> 32));
}

static void ring_init(struct ring *r, void *page, u64 phys)
{
    r->trb = (volatile struct trb *)page;
    r->phys = phys;
    r->index = 0;
    r->cycle = 1;
}

/* Queue one TRB (control without the cycle bit); its physical address. */
static u64 ring_put(struct ring *r, u64 param, u32 status, u32 control)
{
    if (r->index == RING_TRBS - 1) {
        volatile struct trb *link = &r->trb[r->index];
        link->param = r->phys;
        link->status = 0;
        mmio_barrier();
        link->control = TRB_LINK << 10 | 2 /* toggle cycle */ | r->cycle;
        r->index = 0;
        r->cycle ^= 1;
    }
    volatile struct trb *t = &r->trb[r->index];
    t->param = param;
    t->status = status;
    mmio_barrier();
    t->control = control | r->cycle;
    mmio_barrier();
    return r->phys + 16 * r->index++;
}

static void ring_doorbell(u32 slot, u32 target)
{
    mmio_barrier();
    mmio_write32(rg.db, 4 * slot, target);
}

/* The next event, if one is there: copied to *out, the dequeue pointer moved past it. Port Status Change
 * events are noted in rg.port_events as well. */
static bool event_poll(struct trb *out)
{
    volatile struct trb *e = &rg.ev[rg.ev_index];
    if ((e->control & 1) != rg.ev_cycle)
        return false;
    __asm__ volatile("lfence" ::: "memory");
    out->param = e->param;
    out->status = e->status;
    out->control = e->control;
    if (++rg.ev_index == RING_TRBS) {
        rg.ev_index = 0;
        rg.ev_cycle ^= 1;
    }
    write64(rg.rt, 0x38, (rg.ev_phys + 16 * rg.ev_index) | 8); /* ERDP, EHB cleared */
    if ((out->control >> 10 & 0x3f) == TRB_PORT_CHANGE) {
        u32 port = (u32)(out->param >> 24 & 0xff);
        if (port >= 1 && port <= 64)
            rg.port_events |= 1ULL << (port - 1);
    }
    return true;
}

static u32 trb_type(const struct trb *t) { return t->control >> 10 & 0x3f; }
static u32 trb_code(const struct trb *t) { return t->status >> 24; }

/* Wait for an event of `type`; for command completions the one for the TRB at `trb_phys`, for transfer
 * events one from `slot`. Other events (port changes, strays) are consumed. */
static bool event_wait(u32 type, u64 trb_phys, u32 slot, struct trb *out, u64 timeout_ns)
{
    u64 deadline = now_ns() + timeout_ns;
    for (;;) {
        while (event_poll(out)) {
            if (trb_type(out) != type)
                continue;
            if (type == TRB_CMD_COMPLETION && out->param != trb_phys)
                continue;
            if (type == TRB_TRANSFER_EVENT && out->control >> 24 != slot)
                continue;
            return true;
        }
        if (now_ns() >= deadline)
            return false;
        r_yield();
    }
}

/* Run one command: its completion code (0 when none came), the slot id from the completion in *slot. */
static u32 command(u64 param, u32 status, u32 control, u32 *slot)
{
    u64 at = ring_put(&rg.cmd, param, status, control);
    ring_doorbell(0, 0);
    struct trb ev;
    if (!event_wait(TRB_CMD_COMPLETION, at, 0, &ev, CMD_WAIT_NS))
        return 0;
    if (slot)
        *slot = ev.control >> 24;
    return trb_code(&ev);
}

void case_xhci_noop(void)
{
    if (!need(x.reset, "xhci_reset"))
        return;
    u32 hcs2 = mmio_read32(x.regs, 8);
    u32 scratch = (hcs2 >> 21 & 0x1f) << 5 | hcs2 >> 27;
    if (scratch != 0)
        return skip("the controller wants %u scratchpad buffers; the probe gives none", (u64)scratch);
    u64 phys;
    long addr = dma_alloc(4, &phys); /* DCBAA, command ring, event ring, event ring segment table */
    if (is_err(addr))
        return fail("xHCI: DMA memory for the rings: %s returned %E", hw_failed_step(), addr);
    rg.dcbaa = (volatile u64 *)addr;
    ring_init(&rg.cmd, (void *)(addr + 4096), phys + 4096);
    rg.ev = (volatile struct trb *)(addr + 8192);
    rg.ev_phys = phys + 8192;
    rg.ev_cycle = 1;
    rg.csz = mmio_read32(x.regs, 0x10) & 4 ? 64 : 32;
    volatile u64 *erst = (volatile u64 *)(addr + 12288);
    erst[0] = phys + 8192;
    erst[1] = RING_TRBS;
    rg.rt = x.regs + (mmio_read32(x.regs, 0x18) & ~0x1fu) / 4;
    rg.db = x.regs + (mmio_read32(x.regs, 0x14) & ~3u) / 4;
    mmio_write32(x.op, 0x38, x.hcsparams1 & 0xff); /* CONFIG.MaxSlotsEn */
    write64(x.op, 0x30, phys);                      /* DCBAAP */
    write64(x.op, 0x18, (phys + 4096) | 1);         /* CRCR, ring cycle state 1 */
    mmio_write32(rg.rt, 0x28, 1);                   /* interrupter 0: ERSTSZ */
    write64(rg.rt, 0x38, phys + 8192);              /* ERDP */
    write64(rg.rt, 0x30, phys + 12288);             /* ERSTBA */
    mmio_write32(x.op, 0, USBCMD_RS);
    if (!wait_bits(4, USBSTS_HCH, 0, NS_PER_S))
        return fail("xHCI: USBSTS.HCH still set 1 s after USBCMD.RS");
    rg.running = true;
    u64 t0 = now_ns();
    u64 at = ring_put(&rg.cmd, 0, 0, TRB_NOOP_CMD << 10);
    ring_doorbell(0, 0);
    struct trb ev;
    if (!event_wait(TRB_CMD_COMPLETION, at, 0, &ev, NS_PER_S))
        return fail("xHCI: no Command Completion 1 s after a No-Op command (USBSTS %x)", (u64)mmio_read32(x.op, 4));
    u64 took = now_ns() - t0;
    if (trb_code(&ev) != CC_SUCCESS)
        return fail("xHCI: No-Op completed with code %u (want 1)", (u64)trb_code(&ev));
    pass();
    metric_ns_as_us("noop_us", took);
    diag("command ring phys %x, event ring phys %x (one segment of %u TRBs): No-Op -> Command Completion, code 1; "
         "%u-byte contexts", phys + 4096, phys + 8192, (u64)RING_TRBS, (u64)rg.csz);
}

/* ---------------------------------------------------------------- USB devices: enumeration */

#define PORTSC(n) (0x400 + 0x10 * ((n) - 1))
#define PORTSC_PED (1u << 1)
#define PORTSC_PR (1u << 4)
#define PORTSC_PP (1u << 9)
#define PORTSC_CSC (1u << 17)
#define PORTSC_CHANGES (0x7fu << 17) /* CSC PEC WRC OCC PRC PLC CEC: write 1 to clear */
#define PORTSC_PRC (1u << 21)
#define MAX_USB 8
#define PAGE 4096
/* Per device, one DMA block of these pages: */
enum { PG_IN, PG_OUT, PG_EP0, PG_DESC, PG_BULK_IN, PG_BULK_OUT, PG_CBW, PG_DATA, PG_COUNT };

struct usb_dev {
    u32 port, speed, slot;
    u8 *mem;
    u64 phys;
    struct ring ep0, bulk_in, bulk_out;
    u32 id; /* idVendor << 16 | idProduct */
    u32 bcd, mps0;
    u8 config, ep_in, ep_out;
    u32 bulk_mps, tag;
};

static struct {
    struct usb_dev dev[MAX_USB];
    u32 count;
    struct usb_dev *storage;
    bool enumerated, read_ok;
} us;

static const u32 expected_ids[] = {HIL_USB_IDS 0}; /* the attached devices' ids, then a 0 */
#define EXPECTED_IDS (sizeof(expected_ids) / sizeof(expected_ids[0]) - 1)

/* The first problem of a multi-step operation, reported by the case that ran it. */
static struct {
    const char *fmt;
    u64 a, b, c, d, e;
} err;

static bool oops5(const char *fmt, u64 a, u64 b, u64 c, u64 d, u64 e)
{
    err.fmt = fmt;
    err.a = a, err.b = b, err.c = c, err.d = d, err.e = e;
    return false;
}
#define oops(fmt, a, b, c, d) oops5(fmt, a, b, c, d, 0)

static void fail_err(void) { fail(err.fmt, err.a, err.b, err.c, err.d, err.e); }

static u32 portsc(u32 port) { return mmio_read32(x.op, PORTSC(port)); }
static void port_write(u32 port, u32 bits) { mmio_write32(x.op, PORTSC(port), PORTSC_PP | bits); }
static u32 port_count(void) { return x.hcsparams1 >> 24 <= 64 ? x.hcsparams1 >> 24 : 64; }

static volatile u32 *ctx(struct usb_dev *d, u32 page, u32 index)
{
    return (volatile u32 *)(d->mem + page * PAGE + index * rg.csz);
}

static u32 default_mps0(u32 speed) { return speed == 2 ? 8 : speed >= 4 ? 512 : 64; }

static u64 page_phys(struct usb_dev *d, u32 page) { return d->phys + (u64)page * PAGE; }

/* A fresh device record for the device on `port`: its DMA pages and EP0 ring. */
static bool dev_init(struct usb_dev *d, u32 port)
{
    memset(d, 0, sizeof(*d));
    d->port = port;
    long addr = dma_alloc(PG_COUNT, &d->phys);
    if (is_err(addr))
        return oops("port %u: DMA memory for the device contexts and rings failed (%E)", port, (u64)addr, 0, 0);
    d->mem = (u8 *)addr;
    ring_init(&d->ep0, d->mem + PG_EP0 * PAGE, page_phys(d, PG_EP0));
    return true;
}

/* PORTSC.PR until PRC; the port enabled, its speed in d->speed. */
static bool port_reset(struct usb_dev *d)
{
    port_write(d->port, PORTSC_PR);
    u64 deadline = now_ns() + 500 * NS_PER_MS;
    u32 sc;
    while (!((sc = portsc(d->port)) & PORTSC_PRC) && now_ns() < deadline)
        r_yield();
    port_write(d->port, sc & PORTSC_CHANGES);
    if (!(sc & PORTSC_PRC))
        return oops("port %u: no PORTSC.PRC 500 ms after a port reset (PORTSC %x)", d->port, sc, 0, 0);
    if (!(sc & PORTSC_CCS))
        return oops("port %u: no device after the port reset (PORTSC %x)", d->port, sc, 0, 0);
    if (!(sc & PORTSC_PED))
        return oops("port %u: not enabled after the port reset (PORTSC %x)", d->port, sc, 0, 0);
    d->speed = sc >> 10 & 0xf;
    return true;
}

/* Enable Slot, then Address Device with an input context for the slot and EP0. */
static bool address_device(struct usb_dev *d)
{
    u32 code = command(0, 0, TRB_ENABLE_SLOT << 10, &d->slot);
    if (code != CC_SUCCESS)
        return oops("port %u: Enable Slot completion code %u (0: none in 1 s)", d->port, code, 0, 0);
    if (d->slot == 0 || d->slot > (x.hcsparams1 & 0xff))
        return oops("port %u: Enable Slot gave slot %u", d->port, d->slot, 0, 0);
    memset(d->mem, 0, 2 * PAGE);
    ctx(d, PG_IN, 0)[1] = 3; /* add the slot context and EP0 */
    volatile u32 *slot = ctx(d, PG_IN, 1), *ep0 = ctx(d, PG_IN, 2);
    slot[0] = 1u << 27 | d->speed << 20; /* context entries 1 (EP0), root-hub port, no route string */
    slot[1] = d->port << 16;
    ep0[1] = 3u << 1 | 4u << 3 | default_mps0(d->speed) << 16; /* CErr 3, control endpoint */
    ep0[2] = (u32)d->ep0.phys | 1;                             /* dequeue cycle state 1 */
    ep0[3] = (u32)(d->ep0.phys >> 32);
    ep0[4] = 8; /* average TRB length */
    rg.dcbaa[d->slot] = page_phys(d, PG_OUT);
    mmio_barrier();
    code = command(page_phys(d, PG_IN), 0, TRB_ADDRESS_DEVICE << 10 | d->slot << 24, NULL);
    if (code != CC_SUCCESS)
        return oops("slot %u (port %u): Address Device completion code %u (0: none in 1 s)", d->slot, d->port, code,
                    0);
    return true;
}

/* A control transfer on EP0 (Setup, Data when len > 0, Status); the Transfer Event's completion code. */
static u32 control(struct usb_dev *d, u8 type, u8 request, uint16_t value, uint16_t index, uint16_t len)
{
    bool in = type & 0x80;
    u64 setup = type | (u64)request << 8 | (u64)value << 16 | (u64)index << 32 | (u64)len << 48;
    u32 trt = len == 0 ? 0 : in ? 3 : 2;
    ring_put(&d->ep0, setup, 8, TRB_SETUP << 10 | TRB_IDT | trt << 16);
    if (len)
        ring_put(&d->ep0, page_phys(d, PG_DESC), len, TRB_DATA << 10 | (in ? TRB_DIR_IN : 0));
    ring_put(&d->ep0, 0, 0, TRB_STATUS << 10 | TRB_IOC | (len && in ? 0 : TRB_DIR_IN));
    ring_doorbell(d->slot, 1);
    struct trb ev;
    if (!event_wait(TRB_TRANSFER_EVENT, 0, d->slot, &ev, NS_PER_S))
        return 0;
    return trb_code(&ev);
}

static u32 le16(const u8 *p) { return (u32)p[0] | (u32)p[1] << 8; }

static bool get_device_descriptor(struct usb_dev *d)
{
    u8 *buf = d->mem + PG_DESC * PAGE;
    memset(buf, 0, 18);
    u32 code = control(d, 0x80, 6 /* GET_DESCRIPTOR */, 0x0100 /* DEVICE */, 0, 18);
    if (code != CC_SUCCESS)
        return oops("slot %u (port %u): GET_DESCRIPTOR(DEVICE) completion code %u (0: none in 1 s)", d->slot, d->port,
                    code, 0);
    if (buf[0] != 18 || buf[1] != 1)
        return oops("slot %u (port %u): GET_DESCRIPTOR(DEVICE) gave length %u type %u (want 18, 1)", d->slot, d->port,
                    buf[0], buf[1]);
    d->bcd = le16(buf + 2);
    d->mps0 = d->bcd >= 0x300 ? 1u << buf[7] : buf[7]; /* USB 3: an exponent */
    d->id = le16(buf + 8) << 16 | le16(buf + 10);
    return true;
}

static bool enumerate(struct usb_dev *d, u32 port)
{
    return dev_init(d, port) && port_reset(d) && address_device(d) && get_device_descriptor(d);
}

static const char *speed_short(u32 speed)
{
    static const char *names[] = {"?", "FS", "LS", "HS", "SS", "SS+"};
    return speed < 6 ? names[speed] : "?";
}

static void dev_diag(const struct usb_dev *d)
{
    diag("port %u: %s, slot %u, bcdUSB %x, EP0 max packet %u, %x:%x", (u64)d->port, speed_short(d->speed),
         (u64)d->slot, (u64)d->bcd, (u64)d->mps0, (u64)(d->id >> 16), (u64)(d->id & 0xffff));
}

/* Each id hil attached is one device's; the devices' ids that are not, or the attached ids none had. */
static bool check_ids(void)
{
    bool taken[MAX_USB] = {false};
    u32 count = EXPECTED_IDS;
    for (u32 i = 0; i < count; i++) {
        u32 j = 0;
        while (j < us.count && (taken[j] || us.dev[j].id != expected_ids[i]))
            j++;
        if (j == us.count)
            return oops("no enumerated device is %x:%x, which hil attached (%u devices enumerated)",
                        expected_ids[i] >> 16, expected_ids[i] & 0xffff, us.count, 0);
        taken[j] = true;
    }
    for (u32 j = 0; j < us.count; j++)
        if (!taken[j])
            return oops("port %u: %x:%x is not among the devices hil attached", us.dev[j].port, us.dev[j].id >> 16,
                        us.dev[j].id & 0xffff, 0);
    return true;
}

void case_xhci_enumerate(void)
{
    if (!need(rg.running, "xhci_noop"))
        return;
    u64 t0 = now_ns();
    bool ok = true;
    for (u32 n = 1; n <= port_count() && ok; n++) {
        if (!(portsc(n) & PORTSC_CCS))
            continue;
        if (us.count == MAX_USB) {
            ok = oops("more than %u devices connected; the probe enumerates %u", MAX_USB, MAX_USB, 0, 0);
            break;
        }
        ok = enumerate(&us.dev[us.count], n);
        us.count += ok;
    }
    u64 took = now_ns() - t0;
    ok = ok && check_ids();
    if (!ok)
        fail_err();
    else
        pass();
    us.enumerated = ok;
    metric_u("devices", us.count, "count");
    metric_ns_as_us("enumerate_us", took);
    for (u32 i = 0; i < us.count; i++) {
        dev_diag(&us.dev[i]);
        if (HIL_USB_STORAGE && us.dev[i].id == HIL_USB_STORAGE_ID && !us.storage)
            us.storage = &us.dev[i];
    }
}

/* ---------------------------------------------------------------- USB storage: Bulk-Only Transport */

#define BOT_BLOCK 1       /* the known-content disk block read back */
#define SECTOR 512        /* the usb-storage LBA size QEMU gives a raw disk */
#define CSW_LEN 13
#define CBW_LEN 31

static u32 dci(u8 address) { return (address & 0xfu) * 2 + (address & 0x80 ? 1 : 0); }

/* GET_DESCRIPTOR(CONFIGURATION): the mass-storage (class 8, SCSI, bulk-only) interface's bulk endpoints. */
static bool find_bulk_endpoints(struct usb_dev *d)
{
    u8 *buf = d->mem + PG_DESC * PAGE;
    memset(buf, 0, 256);
    u32 code = control(d, 0x80, 6, 0x0200, 0, 255);
    if (code != CC_SUCCESS)
        return oops("slot %u: GET_DESCRIPTOR(CONFIGURATION) completion code %u", d->slot, code, 0, 0);
    u32 total = le16(buf + 2) < 255 ? le16(buf + 2) : 255;
    bool msc = false;
    for (u32 i = 0; i + 2 <= total && buf[i] >= 2; i += buf[i]) {
        const u8 *p = buf + i;
        if (p[1] == 2)
            d->config = p[5];
        else if (p[1] == 4)
            msc = p[5] == 8 && p[6] == 6 && p[7] == 0x50;
        else if (p[1] == 5 && msc && (p[3] & 3) == 2) {
            *(p[2] & 0x80 ? &d->ep_in : &d->ep_out) = p[2];
            d->bulk_mps = le16(p + 4) & 0x7ff;
        }
    }
    if (!d->ep_in || !d->ep_out)
        return oops("slot %u: no bulk-only SCSI interface with bulk IN and OUT in %u bytes of configuration", d->slot,
                    total, 0, 0);
    return true;
}

/* Configure Endpoint for the two bulk endpoints, then SET_CONFIGURATION. */
static bool configure_bulk(struct usb_dev *d)
{
    u32 in = dci(d->ep_in), out = dci(d->ep_out), last = in > out ? in : out;
    ring_init(&d->bulk_in, d->mem + PG_BULK_IN * PAGE, page_phys(d, PG_BULK_IN));
    ring_init(&d->bulk_out, d->mem + PG_BULK_OUT * PAGE, page_phys(d, PG_BULK_OUT));
    memset(d->mem, 0, PAGE);
    ctx(d, PG_IN, 0)[1] = 1u | 1u << in | 1u << out;
    volatile u32 *slot = ctx(d, PG_IN, 1);
    slot[0] = last << 27 | d->speed << 20;
    slot[1] = d->port << 16;
    const struct { u32 dci, type; struct ring *ring; } eps[] = {{in, 6, &d->bulk_in}, {out, 2, &d->bulk_out}};
    for (u32 i = 0; i < 2; i++) {
        volatile u32 *ep = ctx(d, PG_IN, eps[i].dci + 1);
        ep[1] = 3u << 1 | eps[i].type << 3 | d->bulk_mps << 16; /* CErr 3, bulk IN 6 / OUT 2 */
        ep[2] = (u32)eps[i].ring->phys | 1;
        ep[3] = (u32)(eps[i].ring->phys >> 32);
        ep[4] = d->bulk_mps;
    }
    mmio_barrier();
    u32 code = command(page_phys(d, PG_IN), 0, TRB_CONFIGURE_EP << 10 | d->slot << 24, NULL);
    if (code != CC_SUCCESS)
        return oops("slot %u: Configure Endpoint completion code %u (0: none in 1 s)", d->slot, code, 0, 0);
    code = control(d, 0x00, 9 /* SET_CONFIGURATION */, d->config, 0, 0);
    if (code != CC_SUCCESS)
        return oops("slot %u: SET_CONFIGURATION %u completion code %u", d->slot, d->config, code, 0);
    return true;
}

/* One Normal TRB on a bulk ring; the completion code, the bytes moved in *done. */
static u32 bulk(struct usb_dev *d, bool in, u64 phys, u32 len, u32 *done)
{
    ring_put(in ? &d->bulk_in : &d->bulk_out, phys, len, TRB_NORMAL << 10 | TRB_IOC | 1u << 2 /* ISP */);
    ring_doorbell(d->slot, dci(in ? d->ep_in : d->ep_out));
    struct trb ev;
    if (!event_wait(TRB_TRANSFER_EVENT, 0, d->slot, &ev, 2 * NS_PER_S))
        return 0;
    u32 residue = ev.status & 0xffffff;
    *done = residue <= len ? len - residue : 0;
    return trb_code(&ev);
}

static bool bulk_ok(u32 code) { return code == CC_SUCCESS || code == CC_SHORT_PACKET; }

static void put_be32(u8 *p, u32 v)
{
    for (u32 i = 0; i < 4; i++)
        p[i] = (u8)(v >> (24 - 8 * i));
}

/* One SCSI command through BOT: CBW on bulk OUT, data (IN) into PG_DATA, CSW on bulk IN. The CSW status in
 * *status; false (with err) when the transport itself failed. */
static bool bot(struct usb_dev *d, const u8 *cb, u32 cb_len, u32 data_len, u8 *status, u64 *latency_ns)
{
    u8 *cbw = d->mem + PG_CBW * PAGE, *csw = cbw + 64, *data = d->mem + PG_DATA * PAGE;
    memset(cbw, 0, 128);
    memset(data, 0, data_len);
    u32 tag = ++d->tag, done;
    cbw[0] = 'U', cbw[1] = 'S', cbw[2] = 'B', cbw[3] = 'C';
    for (u32 i = 0; i < 4; i++) {
        cbw[4 + i] = (u8)(tag >> (8 * i));
        cbw[8 + i] = (u8)(data_len >> (8 * i));
    }
    cbw[12] = 0x80; /* data in */
    cbw[14] = (u8)cb_len;
    memcpy(cbw + 15, cb, cb_len);
    u64 t0 = now_ns();
    u32 code = bulk(d, false, page_phys(d, PG_CBW), CBW_LEN, &done);
    if (code != CC_SUCCESS)
        return oops("slot %u: CBW (SCSI %x) on bulk OUT %x: completion code %u", d->slot, cb[0], d->ep_out, code);
    bool csw_in_data = false;
    if (data_len) {
        code = bulk(d, true, page_phys(d, PG_DATA), data_len, &done);
        if (!bulk_ok(code))
            return oops("slot %u: data of SCSI %x on bulk IN %x: completion code %u", d->slot, cb[0], d->ep_in, code);
        /* A device that failed the command may answer the data stage with its CSW at once. */
        csw_in_data = done == CSW_LEN && mem_eq_str(data, 4, "USBS");
        if (csw_in_data)
            memcpy(csw, data, CSW_LEN);
    }
    if (!csw_in_data) {
        code = bulk(d, true, page_phys(d, PG_CBW) + 64, CSW_LEN, &done);
        if (!bulk_ok(code) || done != CSW_LEN)
            return oops5("slot %u: CSW of SCSI %x on bulk IN %x: completion code %u, %u bytes", d->slot, cb[0],
                        d->ep_in, code, done);
    }
    *latency_ns = now_ns() - t0;
    u32 got_tag = (u32)csw[4] | (u32)csw[5] << 8 | (u32)csw[6] << 16 | (u32)csw[7] << 24;
    if (!mem_eq_str(csw, 4, "USBS") || got_tag != tag)
        return oops5("slot %u: CSW of SCSI %x: signature %x tag %u (want 'USBS', tag %u)", d->slot, cb[0],
                    (u64)csw[0] | (u64)csw[1] << 8 | (u64)csw[2] << 16 | (u64)csw[3] << 24, got_tag, tag);
    *status = csw[12];
    return true;
}

/* READ(10) of the known-content block, after REQUEST SENSE and one retry when the first CSW says status 1
 * (a fresh device reports UNIT ATTENTION once). The block's content checked with pattern.c. */
static bool read_block(struct usb_dev *d, u64 *latency_ns, u32 *sense)
{
    u32 lba = BOT_BLOCK * (DISK_BLOCK / SECTOR);
    u8 read10[10] = {0x28, 0, 0, 0, 0, 0, 0, 0, DISK_BLOCK / SECTOR, 0};
    put_be32(read10 + 2, lba);
    u8 status = 0;
    *sense = 0;
    for (u32 attempt = 0; attempt < 2; attempt++) {
        if (!bot(d, read10, 10, DISK_BLOCK, &status, latency_ns))
            return false;
        if (status != 1)
            break;
        const u8 request_sense[6] = {0x03, 0, 0, 0, 18, 0};
        u8 sense_status;
        u64 ignored;
        if (!bot(d, request_sense, 6, 18, &sense_status, &ignored))
            return false;
        const u8 *s = d->mem + PG_DATA * PAGE;
        *sense = (u32)(s[2] & 0xf) << 16 | (u32)s[12] << 8 | s[13]; /* sense key, ASC, ASCQ */
    }
    if (status != 0)
        return oops("slot %u: READ(10) LBA %u: CSW status %u after REQUEST SENSE and a retry (sense %x)", d->slot, lba,
                    status, *sense);
    u64 which = disk_block_check(d->mem + PG_DATA * PAGE, HIL_USB_DISK_SEED);
    if (which == ~0ULL)
        return oops("slot %u: READ(10) LBA %u: not the known content of any block (seed %u)", d->slot, lba,
                    HIL_USB_DISK_SEED, 0);
    if (which != BOT_BLOCK)
        return oops("slot %u: READ(10) LBA %u: the known content of block %u, not %u", d->slot, lba, which, BOT_BLOCK);
    return true;
}

static void read_diag(const struct usb_dev *d, u64 latency_ns, u32 sense)
{
    if (sense)
        diag("slot %u: first READ(10) got CSW status 1, REQUEST SENSE: key %u ASC %x ASCQ %x; retry ok", (u64)d->slot,
             (u64)(sense >> 16), (u64)(sense >> 8 & 0xff), (u64)(sense & 0xff));
    diag("slot %u: READ(10) of disk block %u (LBA %u, %u bytes) verified against the known pattern (seed %u); "
         "CBW->CSW %u us",
         (u64)d->slot, (u64)BOT_BLOCK, (u64)(BOT_BLOCK * DISK_BLOCK / SECTOR), (u64)DISK_BLOCK, (u64)HIL_USB_DISK_SEED,
         latency_ns / NS_PER_US);
}

void case_xhci_storage_read(void)
{
    if (!need(us.enumerated, "xhci_enumerate"))
        return;
    if (!us.storage)
        return skip("no usb-storage attached (%x:%x) to read from", (u64)(HIL_USB_STORAGE_ID >> 16),
                    (u64)(HIL_USB_STORAGE_ID & 0xffff));
    struct usb_dev *d = us.storage;
    u64 latency = 0;
    u32 sense = 0;
    if (!find_bulk_endpoints(d) || !configure_bulk(d) || !read_block(d, &latency, &sense))
        return fail_err();
    us.read_ok = true;
    pass();
    metric_ns_as_us("cbw_to_csw_us", latency);
    diag("slot %u: configuration %u, bulk IN %x OUT %x, max packet %u", (u64)d->slot, (u64)d->config, (u64)d->ep_in,
         (u64)d->ep_out, (u64)d->bulk_mps);
    read_diag(d, latency, sense);
}

/* ---------------------------------------------------------------- hotplug, asked of the host */

#define PLUG_WAIT_NS (10 * NS_PER_S)
static u64 unplugged_at;

/* Ask the host (the console_probe step's unplug_on_request / replug_on_request) on the console. */
static void request(const char *what) { say("hil-request: %s", what); }

static void drain_events(void)
{
    struct trb ev;
    while (event_poll(&ev))
        ;
}

void case_xhci_unplug(void)
{
    if (!need(us.enumerated && us.storage, "xhci_enumerate (with a usb-storage)"))
        return;
    if (!HIL_XHCI_UNPLUG)
        return skip("the console_probe step has no unplug_on_request naming the usb-storage device: nobody unplugs it");
    struct usb_dev *d = us.storage;
    drain_events();
    rg.port_events = 0;
    request("unplug");
    u64 t0 = now_ns(), deadline = t0 + PLUG_WAIT_NS;
    u32 sc;
    while ((sc = portsc(d->port)) & PORTSC_CCS && now_ns() < deadline) {
        drain_events();
        r_yield();
    }
    u64 took = now_ns() - t0;
    if (sc & PORTSC_CCS)
        return fail("port %u: usb-storage still connected 10 s after asking the host to unplug it (PORTSC %x)",
                    (u64)d->port, (u64)sc);
    sleep_ns(5 * NS_PER_MS);
    drain_events();
    bool event = rg.port_events >> (d->port - 1) & 1;
    port_write(d->port, sc & PORTSC_CHANGES);
    u32 code = command(0, 0, TRB_DISABLE_SLOT << 10 | d->slot << 24, NULL);
    rg.dcbaa[d->slot] = 0;
    if (!(sc & PORTSC_CSC))
        return fail("port %u: CCS went 1 -> 0 without PORTSC.CSC (PORTSC %x)", (u64)d->port, (u64)sc);
    if (code != CC_SUCCESS)
        return fail("slot %u (port %u): Disable Slot completion code %u after the unplug", (u64)d->slot,
                    (u64)d->port, (u64)code);
    unplugged_at = now_ns();
    pass();
    metric_ns_as_us("detect_us", took);
    diag("port %u: CCS 1 -> 0 with CSC %u us after the request (PORTSC %x, Port Status Change event: %s); slot %u "
         "disabled",
         (u64)d->port, took / NS_PER_US, (u64)sc, event ? "yes" : "no", (u64)d->slot);
}

static bool port_in_use(u32 port)
{
    for (u32 i = 0; i < us.count; i++)
        if (us.dev[i].port == port && &us.dev[i] != us.storage)
            return true;
    return false;
}

void case_xhci_replug(void)
{
    if (!need(unplugged_at != 0, "xhci_unplug"))
        return;
    if (!HIL_XHCI_REPLUG)
        return skip("the console_probe step has no replug_on_request naming the usb-storage device: nobody plugs it");
    struct usb_dev *d = us.storage;
    u32 old_port = d->port, old_slot = d->slot;
    rg.port_events = 0;
    request("replug");
    u64 t0 = now_ns(), deadline = t0 + PLUG_WAIT_NS;
    u32 port = 0;
    while (!port && now_ns() < deadline) {
        drain_events();
        for (u32 n = 1; n <= port_count() && !port; n++)
            if (portsc(n) & PORTSC_CCS && !port_in_use(n))
                port = n;
        if (!port)
            r_yield();
    }
    u64 took = now_ns() - t0;
    if (!port)
        return fail("no port shows a new device 10 s after asking the host to plug usb-storage back");
    sleep_ns(5 * NS_PER_MS);
    u64 t1 = now_ns();
    if (!enumerate(d, port))
        return fail_err();
    u64 enum_took = now_ns() - t1;
    if (d->id != HIL_USB_STORAGE_ID)
        return fail("port %u: the device plugged back is %x:%x, not usb-storage %x:%x", (u64)port, (u64)(d->id >> 16),
                    (u64)(d->id & 0xffff), (u64)(HIL_USB_STORAGE_ID >> 16), (u64)(HIL_USB_STORAGE_ID & 0xffff));
    u64 latency = 0;
    u32 sense = 0;
    bool read = us.read_ok;
    if (read && !(find_bulk_endpoints(d) && configure_bulk(d) && read_block(d, &latency, &sense)))
        return fail_err();
    pass();
    metric_ns_as_us("detect_us", took);
    metric_ns_as_us("enumerate_us", enum_took);
    if (read)
        metric_ns_as_us("cbw_to_csw_us", latency);
    diag("usb-storage back %u us after the request, on port %u (was port %u, slot %u)", took / NS_PER_US, (u64)port,
         (u64)old_port, (u64)old_slot);
    dev_diag(d);
    if (read)
        read_diag(d, latency, sense);
    else
        diag("block not read again: xhci_storage_read did not pass");
}
