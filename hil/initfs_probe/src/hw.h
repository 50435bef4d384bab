/*
 * What a user-space driver needs from the kernel, as the bootstrap context gets it (redox-os/kernel caf5fa95):
 * PCI configuration space through ports 0xCF8/0xCFC (after the Iopl verb), physical memory through the
 * `memory` scheme (`physical@uc` mappings for BARs, `zeroed@wb?phys_contiguous` for DMA, `translation` for
 * virtual -> physical), and interrupts through the `irq` scheme.
 */
#pragma once

#include "rt.h"

static inline void outl(uint16_t port, u32 value) { __asm__ volatile("outl %0, %1" ::"a"(value), "Nd"(port)); }
static inline u32 inl(uint16_t port)
{
    u32 value;
    __asm__ volatile("inl %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}
static inline void outw(uint16_t port, uint16_t value) { __asm__ volatile("outw %0, %1" ::"a"(value), "Nd"(port)); }
static inline u8 inb(uint16_t port)
{
    u8 value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}
static inline void mmio_barrier(void) { __asm__ volatile("mfence" ::: "memory"); }
static inline u32 mmio_read32(volatile u32 *base, u32 offset) { return base[offset / 4]; }
static inline void mmio_write32(volatile u32 *base, u32 offset, u32 value) { base[offset / 4] = value; }

/* PCI configuration mechanism #1 (0xCF8 address, 0xCFC data); needs the io_privilege case first. */
u32 pci_read32(u32 bdf, u32 offset);
void pci_write32(u32 bdf, u32 offset, u32 value);
static inline u32 pci_bdf(u32 bus, u32 dev, u32 fn) { return bus << 16 | dev << 11 | fn << 8; }

/* A number hil chose for this run (a host port), by key, from the fw_cfg item HIL_RUN_VALUES ("key=value;..."):
 * values that change every run stay out of the build, so one probe and one disk serve every run. 0 when found;
 * -ENODEV without fw_cfg, -ENOENT without the item or the key, -EINVAL for a value that is not a number. */
long run_value(const char *key, u64 *value);

/* The kernel's physical-memory interface; results are addresses or a negative errno. */
long phys_map(u64 phys, u64 size);              /* uncached mapping of device memory */
long dma_alloc(u64 pages, u64 *phys);           /* zeroed, physically contiguous; phys from the kernel */
long virt_to_phys(const void *virt, u64 *phys); /* 0 or -errno */
const char *hw_failed_step(void);

/* ---- PCI: finding a function, sizing a BAR, walking the capability list ---- */
#define PCI_ANY 0xffffffffu
/* The first function whose class (config 0x08 >> 8) or vendor:device (config 0x00) matches; PCI_ANY skips a
 * criterion. Scans buses 0-255 (multi-function devices only past function 0); *seen counts functions. */
bool pci_find(u32 class, u32 vendor_device, u32 *found_bdf, u64 *seen);
bool pci_bar(u32 bdf, u32 index, u64 *phys, u64 *size); /* a memory BAR's address and size; false for I/O */
u32 pci_find_cap(u32 bdf, u8 id);                        /* the capability's config offset, 0 if none */
bool pci_enable(u32 bdf, u32 *before, u32 *after);       /* memory space + bus master on */
/* A device's PCI case up to its own checks: io_privilege passed, the function found (class, vendor_device as
 * pci_find) and enabled (pci_enable). False with the case skipped or failed, the messages naming the device as
 * `what` and `id` ("no e1000 on PCI (8086:100e) among N functions ..."). */
bool pci_case_enable(const char *what, const char *id, u32 class, u32 vendor_device, u32 *bdf, u64 *seen,
                     u32 *before, u32 *after);

/* ---- interrupts through the irq scheme ---- */
long irq_open_line(u8 line, const char **path);  /* /scheme/irq/N for a legacy line; the fd */
long irq_alloc_vector(u64 *irq);                 /* cpu-00/N (N >= 16) reserved with O_CREAT; the fd */
long irq_count(long fd, u64 *count);             /* 8 bytes and *count when the count moved, else 0 bytes */
static inline long irq_ack(long fd, u64 count) { return r_write(fd, &count, sizeof(count)); }
