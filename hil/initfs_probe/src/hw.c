/* Kernel interfaces for the NVMe cases; see hw.h. */
#include "hw.h"

static const char *failed_step = "none";
static long translation_fd = -1;

const char *hw_failed_step(void) { return failed_step; }

static long step(const char *what, long result)
{
    if (is_err(result))
        failed_step = what;
    return result;
}

u32 pci_read32(u32 bdf, u32 offset)
{
    outl(0xcf8, 0x80000000u | bdf | (offset & 0xfc));
    return inl(0xcfc);
}

void pci_write32(u32 bdf, u32 offset, u32 value)
{
    outl(0xcf8, 0x80000000u | bdf | (offset & 0xfc));
    outl(0xcfc, value);
}

static long fmap_fd(long fd, struct map_r *map) { return redox_syscall5(SYS_FMAP, (u64)fd, (u64)map, sizeof(*map), 0, 0); }

long phys_map(u64 phys, u64 size)
{
    long fd = step("open /scheme/memory/physical@uc", r_open("/scheme/memory/physical@uc", O_RDWR | O_CLOEXEC));
    if (is_err(fd))
        return fd;
    struct map_r map = {.offset = phys, .size = size, .flags = PROT_READ | PROT_WRITE, .address = 0};
    long addr = step("fmap physical@uc", fmap_fd(fd, &map));
    r_close(fd); /* the mapping outlives the handle */
    return addr;
}

long virt_to_phys(const void *virt, u64 *phys)
{
    if (translation_fd < 0) {
        long fd = step("open /scheme/memory/translation", r_open("/scheme/memory/translation", O_RDWR | O_CLOEXEC));
        if (is_err(fd))
            return fd;
        translation_fd = fd;
    }
    u64 word = (u64)virt; /* in: the virtual address; out: the physical one (kernel MemoryScheme::kcall) */
    long r = step("SYS_CALL translation", r_call(translation_fd, &word, sizeof(word), NULL, 0));
    if (r == 0)
        *phys = word;
    return r;
}

long dma_alloc(u64 pages, u64 *phys)
{
    const char *path = "/scheme/memory/zeroed@wb?phys_contiguous";
    long fd = step("open /scheme/memory/zeroed@wb?phys_contiguous", r_open(path, O_RDWR | O_CLOEXEC));
    if (is_err(fd))
        return fd;
    struct map_r map = {.offset = 0, .size = pages * 4096, .flags = PROT_READ | PROT_WRITE | MAP_PRIVATE, .address = 0};
    long addr = step("fmap zeroed phys_contiguous", fmap_fd(fd, &map));
    r_close(fd);
    if (is_err(addr))
        return addr;
    /* The kernel promises contiguity: check every page against the first, through its own translation. */
    for (u64 i = 0; i < pages; i++) {
        u64 p;
        long r = virt_to_phys((u8 *)addr + i * 4096, &p);
        if (r != 0)
            return r;
        if (i == 0)
            *phys = p;
        else if (p != *phys + i * 4096)
            return step("DMA pages not contiguous", -(long)EIO);
    }
    return addr;
}
