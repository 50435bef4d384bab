/*
 * The xHCI cases (variant redox-xhci): find QEMU's xHCI (qemu-xhci or nec-usb-xhci) on PCI, map BAR0, read its
 * capability registers, halt and reset it, read every root-hub port's status (connect, speed), counting the
 * devices hil attached, then run a No-Op through command and event rings. Register layout from the eXtensible
 * Host Controller Interface spec 1.2 (5.3 capability, 5.4 operational, 5.5 runtime registers, 6.4 TRBs); every
 * kernel interface in hw.c. Enumeration (Enable Slot, Address Device, GET_DESCRIPTOR) is not done yet.
 */
#include "hw.h"

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
    if (case_status("io_privilege") != ST_PASS)
        return skip("needs io_privilege: PCI config space is reached through ports 0xCF8/0xCFC");
    u64 seen = 0;
    if (!pci_find(XHCI_CLASS, PCI_ANY, &x.bdf, &seen))
        return fail("no xHCI controller on PCI (class 0c:03:30) among %u functions", seen);
    u32 before, after;
    if (!pci_enable(x.bdf, &before, &after))
        return fail("xHCI: command register %x after setting memory space and bus master", (u64)after);
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

/* ---------------------------------------------------------------- command and event rings */

struct trb {
    u64 param;
    u32 status;
    u32 control; /* bit 0 cycle, bits 10-15 type */
};
_Static_assert(sizeof(struct trb) == 16, "a TRB is 16 bytes");

#define TRB_NOOP_CMD 23
#define TRB_CMD_COMPLETION 33
#define RING_TRBS 256

static void write64(volatile u32 *base, u32 offset, u64 value)
{
    mmio_write32(base, offset, (u32)value);
    mmio_write32(base, offset + 4, (u32)(value >> 32));
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
    volatile struct trb *cmd = (volatile struct trb *)(addr + 4096), *ev = (volatile struct trb *)(addr + 8192);
    volatile u64 *erst = (volatile u64 *)(addr + 12288);
    erst[0] = phys + 8192;
    erst[1] = RING_TRBS;
    volatile u32 *rt = x.regs + (mmio_read32(x.regs, 0x18) & ~0x1fu) / 4;
    volatile u32 *db = x.regs + (mmio_read32(x.regs, 0x14) & ~3u) / 4;
    mmio_write32(x.op, 0x38, x.hcsparams1 & 0xff); /* CONFIG.MaxSlotsEn */
    write64(x.op, 0x30, phys);                      /* DCBAAP */
    write64(x.op, 0x18, (phys + 4096) | 1);         /* CRCR, ring cycle state 1 */
    mmio_write32(rt, 0x28, 1);                      /* interrupter 0: ERSTSZ */
    write64(rt, 0x38, phys + 8192);                 /* ERDP */
    write64(rt, 0x30, phys + 12288);                /* ERSTBA */
    mmio_write32(x.op, 0, USBCMD_RS);
    if (!wait_bits(4, USBSTS_HCH, 0, NS_PER_S))
        return fail("xHCI: USBSTS.HCH still set 1 s after USBCMD.RS");
    u64 t0 = now_ns();
    cmd[0].param = 0;
    cmd[0].status = 0;
    mmio_barrier();
    cmd[0].control = TRB_NOOP_CMD << 10 | 1;
    mmio_barrier();
    mmio_write32(db, 0, 0);
    u64 deadline = t0 + NS_PER_S;
    while (!(ev[0].control & 1) && now_ns() < deadline)
        r_yield();
    if (!(ev[0].control & 1))
        return fail("xHCI: no event 1 s after a No-Op command (USBSTS %x)", (u64)mmio_read32(x.op, 4));
    u64 took = now_ns() - t0;
    u32 type = ev[0].control >> 10 & 0x3f, code = ev[0].status >> 24;
    write64(rt, 0x38, (phys + 8192 + 16) | 8); /* ERDP past the event, EHB cleared */
    if (type != TRB_CMD_COMPLETION || code != 1 || ev[0].param != phys + 4096)
        return fail("xHCI: No-Op answered by event type %u, completion code %u, for TRB %x (want 33, 1, %x)",
                    (u64)type, (u64)code, ev[0].param, phys + 4096);
    pass();
    metric_ns_as_us("noop_us", took);
    diag("command ring phys %x, event ring phys %x (one segment of %u TRBs): No-Op -> Command Completion, code 1",
         phys + 4096, phys + 8192, (u64)RING_TRBS);
}
