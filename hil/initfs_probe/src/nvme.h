/* The NVMe cases of the probe (variant redox-nvme): a minimal driver for QEMU's NVMe controller. */
#pragma once

#include "nvme_cmd.h"
#include "rt.h"

#define NVME_QUEUE_ENTRIES 128

struct nvme_queue {
    volatile struct nvme_sqe *sq;
    volatile struct nvme_cqe *cq;
    u64 sq_phys, cq_phys;
    uint16_t qid, entries, sq_tail, cq_head;
    u8 phase;
};

void nvme_submit(struct nvme_queue *q, const struct nvme_sqe *s);
bool nvme_poll(struct nvme_queue *q, struct nvme_cqe *out);
long nvme_queue_alloc(struct nvme_queue *q, uint16_t qid);
long nvme_create_queue_pair(struct nvme_queue *q, uint16_t qid); /* polled, 0 or a negative errno/status */
/* Synchronous I/O on queue 1 by polling: 0, or a negative errno / -(0x1000 | NVMe status) */
long nvme_io_sync(u8 opcode, u64 block, void *buf, u64 buf_phys);
u64 nvme_lbas_per_block(void);
bool nvme_ready(void); /* every case up to the I/O queue passed */
