/*
 * NVMe queue entries and the commands the probe sends, as plain data (NVM Express Base Specification 1.4:
 * 4.2 submission queue entry, 4.6 completion queue entry, 5.x admin commands, 6.x NVM commands). No syscalls
 * here: the host-side tests compile this file with the host's gcc and check the bytes.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct nvme_sqe {
    uint8_t opcode;
    uint8_t flags; /* FUSE/PSDT: 0 = PRPs, not fused */
    uint16_t cid;
    uint32_t nsid;
    uint64_t rsvd;
    uint64_t mptr;
    uint64_t prp1;
    uint64_t prp2;
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};

struct nvme_cqe {
    uint32_t dw0;
    uint32_t dw1;
    uint16_t sq_head;
    uint16_t sq_id;
    uint16_t cid;
    uint16_t status; /* bit 0: phase tag; bits 1-15: status field */
};

_Static_assert(sizeof(struct nvme_sqe) == 64, "an NVMe submission entry is 64 bytes");
_Static_assert(sizeof(struct nvme_cqe) == 16, "an NVMe completion entry is 16 bytes");

enum {
    NVME_ADMIN_CREATE_SQ = 0x01,
    NVME_ADMIN_CREATE_CQ = 0x05,
    NVME_ADMIN_IDENTIFY = 0x06,
    NVME_CMD_WRITE = 0x01,
    NVME_CMD_READ = 0x02,
    NVME_CNS_NAMESPACE = 0,
    NVME_CNS_CONTROLLER = 1,
};

/* Controller registers (offsets in BAR0) and their bits. */
enum {
    NVME_REG_CAP = 0x00,
    NVME_REG_VS = 0x08,
    NVME_REG_INTMS = 0x0c,
    NVME_REG_INTMC = 0x10,
    NVME_REG_CC = 0x14,
    NVME_REG_CSTS = 0x1c,
    NVME_REG_AQA = 0x24,
    NVME_REG_ASQ = 0x28,
    NVME_REG_ACQ = 0x30,
    NVME_DOORBELLS = 0x1000,
    NVME_CC_EN = 1,
    NVME_CSTS_RDY = 1,
    NVME_CSTS_CFS = 2,
};

void nvme_identify(struct nvme_sqe *s, uint16_t cid, uint32_t nsid, uint32_t cns, uint64_t prp1);
void nvme_create_cq(struct nvme_sqe *s, uint16_t cid, uint16_t qid, uint16_t entries, uint64_t prp1, bool irq,
                    uint16_t vector);
void nvme_create_sq(struct nvme_sqe *s, uint16_t cid, uint16_t qid, uint16_t entries, uint64_t prp1, uint16_t cqid);
/* One read or write of `blocks` logical blocks that fit in one 4 KiB page (PRP1 only). */
void nvme_rw(struct nvme_sqe *s, uint8_t opcode, uint16_t cid, uint32_t nsid, uint64_t lba, uint16_t blocks,
             uint64_t prp1);
/* CC for an enabled controller with 4 KiB pages, 64-byte SQ entries and 16-byte CQ entries. */
uint32_t nvme_cc_enable(void);
uint32_t nvme_aqa(uint16_t sq_entries, uint16_t cq_entries);
/* The doorbell of queue qid (tail for the SQ, head for the CQ), with CAP.DSTRD = dstrd. */
uint32_t nvme_doorbell(uint16_t qid, bool completion, uint32_t dstrd);
/* The status field of a completion without the phase bit: 0 is success (SCT 0, SC 0). */
static inline uint16_t nvme_status(const struct nvme_cqe *c) { return (uint16_t)(c->status >> 1); }
static inline bool nvme_phase(const struct nvme_cqe *c) { return c->status & 1; }
