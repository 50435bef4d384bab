/* Kernel interfaces for the device cases (NVMe, e1000); see hw.h. */
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

/* ---------------------------------------------------------------- PCI */

bool pci_find(u32 class, u32 vendor_device, u32 *found_bdf, u64 *seen)
{
    for (u32 bus = 0; bus < 256; bus++)
        for (u32 dev = 0; dev < 32; dev++)
            for (u32 fn = 0; fn < 8; fn++) {
                u32 bdf = pci_bdf(bus, dev, fn);
                u32 id = pci_read32(bdf, 0);
                if ((id & 0xffff) == 0xffff) {
                    if (fn == 0)
                        break;
                    continue;
                }
                (*seen)++;
                bool class_ok = class == PCI_ANY || pci_read32(bdf, 8) >> 8 == class;
                bool id_ok = vendor_device == PCI_ANY || id == vendor_device;
                if (class_ok && id_ok) {
                    *found_bdf = bdf;
                    return true;
                }
                if (fn == 0 && !(pci_read32(bdf, 0x0c) >> 16 & 0x80))
                    break;
            }
    return false;
}

bool pci_enable(u32 bdf, u32 *before, u32 *after)
{
    *before = pci_read32(bdf, 4) & 0xffff;
    pci_write32(bdf, 4, *before | 0x6);
    *after = pci_read32(bdf, 4) & 0xffff;
    return (*after & 0x6) == 0x6;
}

bool pci_case_enable(const char *what, const char *id, u32 class, u32 vendor_device, u32 *bdf, u64 *seen,
                     u32 *before, u32 *after)
{
    if (case_status("io_privilege") != ST_PASS) {
        skip("needs io_privilege: PCI config space is reached through ports 0xCF8/0xCFC");
        return false;
    }
    *seen = 0;
    if (!pci_find(class, vendor_device, bdf, seen)) {
        fail("no %s on PCI (%s) among %u functions on buses 0-255", what, id, *seen);
        return false;
    }
    if (!pci_enable(*bdf, before, after)) {
        fail("%s: command register %x after setting memory space and bus master", what, (u64)*after);
        return false;
    }
    return true;
}

/* Sized with memory decoding off, then restored. */
bool pci_bar(u32 bdf, u32 index, u64 *phys, u64 *size)
{
    u32 reg = 0x10 + 4 * index;
    u32 lo = pci_read32(bdf, reg), hi = 0;
    bool is64 = (lo & 6) == 4;
    if (is64)
        hi = pci_read32(bdf, reg + 4);
    u32 cmd = pci_read32(bdf, 4);
    pci_write32(bdf, 4, cmd & ~2u);
    pci_write32(bdf, reg, ~0u);
    u32 mask = pci_read32(bdf, reg) & ~0xfu;
    pci_write32(bdf, reg, lo);
    pci_write32(bdf, 4, cmd);
    *phys = ((u64)hi << 32) | (lo & ~0xfu);
    *size = (u64)(~mask) + 1;
    return !(lo & 1) && *phys != 0;
}

u32 pci_find_cap(u32 bdf, u8 id)
{
    if (!(pci_read32(bdf, 4) >> 16 & 0x10))
        return 0;
    u32 at = pci_read32(bdf, 0x34) & 0xfc;
    for (int guard = 0; at && guard < 48; guard++) {
        u32 head = pci_read32(bdf, at);
        if ((head & 0xff) == id)
            return at;
        at = head >> 8 & 0xfc;
    }
    return 0;
}

/* ---------------------------------------------------------------- interrupts */

long irq_open_line(u8 line, const char **path_out)
{
    static char path[32] = "/scheme/irq/";
    u64 n = str_len("/scheme/irq/");
    if (line >= 10)
        path[n++] = (char)('0' + line / 10);
    path[n++] = (char)('0' + line % 10);
    path[n] = 0;
    *path_out = path;
    return r_open(path, O_RDWR | O_CLOEXEC);
}

long irq_alloc_vector(u64 *irq)
{
    static char path[] = "/scheme/irq/cpu-00/NN";
    long fd = -(long)ENOENT;
    for (u64 n = 16; n < 100; n++) {
        path[sizeof(path) - 3] = (char)('0' + n / 10);
        path[sizeof(path) - 2] = (char)('0' + n % 10);
        fd = r_open(path, O_RDWR | O_CREAT | O_CLOEXEC);
        if (!is_err(fd)) {
            *irq = n;
            return fd;
        }
        if (fd != -(long)EEXIST)
            return fd;
    }
    return fd;
}

long irq_count(long fd, u64 *count)
{
    u64 word = 0;
    long n = r_read(fd, &word, sizeof(word));
    if (n == sizeof(word))
        *count = word;
    return n;
}

/* ---- QEMU fw_cfg over I/O ports (docs/specs/fw_cfg.rst): a 16-bit selector, then the item's bytes one by
 * one; item 0 reads "QEMU", item 0x19 is the directory: a big-endian count, then 64-byte entries of size
 * (be32), selector (be16), reserved (2) and a NUL-padded name (56). ---- */
#define FW_CFG_SELECTOR 0x510
#define FW_CFG_DATA 0x511
#define FW_CFG_SIGNATURE 0x0000
#define FW_CFG_FILE_DIR 0x0019
#define FW_CFG_NAME_LEN 56

static u32 fw_cfg_be(u32 bytes)
{
    u32 value = 0;
    for (u32 i = 0; i < bytes; i++)
        value = value << 8 | inb(FW_CFG_DATA);
    return value;
}

/* The named item's first cap - 1 bytes into buf, NUL-terminated: its length, -ENODEV or -ENOENT. */
static long fw_cfg_file(const char *name, char *buf, u32 cap)
{
    outw(FW_CFG_SELECTOR, FW_CFG_SIGNATURE);
    if (fw_cfg_be(4) != 0x51454d55u) /* "QEMU" */
        return -(long)ENODEV;
    outw(FW_CFG_SELECTOR, FW_CFG_FILE_DIR);
    for (u32 count = fw_cfg_be(4); count > 0; count--) {
        u32 size = fw_cfg_be(4);
        uint16_t selector = (uint16_t)fw_cfg_be(2);
        fw_cfg_be(2);
        char entry[FW_CFG_NAME_LEN + 1] = {0};
        for (u32 i = 0; i < FW_CFG_NAME_LEN; i++)
            entry[i] = (char)inb(FW_CFG_DATA);
        if (!str_eq(entry, name))
            continue;
        outw(FW_CFG_SELECTOR, selector);
        u32 len = size < cap - 1 ? size : cap - 1;
        for (u32 i = 0; i < len; i++)
            buf[i] = (char)inb(FW_CFG_DATA);
        buf[len] = 0;
        return len;
    }
    return -(long)ENOENT;
}

long run_value(const char *key, u64 *value)
{
    static char values[512];
    static long read_result = 1; /* not read yet */
    if (read_result == 1)
        read_result = fw_cfg_file(HIL_RUN_VALUES, values, sizeof(values));
    if (read_result < 0)
        return read_result;
    u64 key_len = str_len(key);
    for (const char *p = values; *p;) {
        const char *end = p;
        while (*end && *end != ';')
            end++;
        if ((u64)(end - p) > key_len && memcmp(p, key, key_len) == 0 && p[key_len] == '=') {
            const char *digit = p + key_len + 1;
            if (digit == end)
                return -(long)EINVAL;
            u64 number = 0;
            for (; digit < end; digit++) {
                if (*digit < '0' || *digit > '9')
                    return -(long)EINVAL;
                number = number * 10 + (u64)(*digit - '0');
            }
            *value = number;
            return 0;
        }
        p = *end ? end + 1 : end;
    }
    return -(long)ENOENT;
}
