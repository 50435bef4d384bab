/* Builders for NVMe commands and register values; see nvme_cmd.h. */
#include "nvme_cmd.h"

static void sqe_clear(struct nvme_sqe *s)
{
    volatile uint8_t *b = (volatile uint8_t *)s; /* volatile: no call to a memset we may not have */
    for (unsigned i = 0; i < sizeof(*s); i++)
        b[i] = 0;
}

void nvme_identify(struct nvme_sqe *s, uint16_t cid, uint32_t nsid, uint32_t cns, uint64_t prp1)
{
    sqe_clear(s);
    s->opcode = NVME_ADMIN_IDENTIFY;
    s->cid = cid;
    s->nsid = nsid;
    s->prp1 = prp1;
    s->cdw10 = cns;
}

void nvme_create_cq(struct nvme_sqe *s, uint16_t cid, uint16_t qid, uint16_t entries, uint64_t prp1, bool irq,
                    uint16_t vector)
{
    sqe_clear(s);
    s->opcode = NVME_ADMIN_CREATE_CQ;
    s->cid = cid;
    s->prp1 = prp1;
    s->cdw10 = (uint32_t)(entries - 1) << 16 | qid;       /* QSIZE is 0-based */
    s->cdw11 = (uint32_t)vector << 16 | (irq ? 2u : 0u) | 1u; /* IV, IEN, PC (physically contiguous) */
}

void nvme_create_sq(struct nvme_sqe *s, uint16_t cid, uint16_t qid, uint16_t entries, uint64_t prp1, uint16_t cqid)
{
    sqe_clear(s);
    s->opcode = NVME_ADMIN_CREATE_SQ;
    s->cid = cid;
    s->prp1 = prp1;
    s->cdw10 = (uint32_t)(entries - 1) << 16 | qid;
    s->cdw11 = (uint32_t)cqid << 16 | 1u; /* CQID, priority 0, PC */
}

void nvme_rw(struct nvme_sqe *s, uint8_t opcode, uint16_t cid, uint32_t nsid, uint64_t lba, uint16_t blocks,
             uint64_t prp1)
{
    sqe_clear(s);
    s->opcode = opcode;
    s->cid = cid;
    s->nsid = nsid;
    s->prp1 = prp1;
    s->cdw10 = (uint32_t)lba;
    s->cdw11 = (uint32_t)(lba >> 32);
    s->cdw12 = (uint32_t)(blocks - 1); /* NLB is 0-based */
}

uint32_t nvme_cc_enable(void) { return 4u << 20 | 6u << 16 | NVME_CC_EN; } /* IOCQES 2^4, IOSQES 2^6, MPS 0, CSS 0 */

uint32_t nvme_aqa(uint16_t sq_entries, uint16_t cq_entries)
{
    return (uint32_t)(cq_entries - 1) << 16 | (uint32_t)(sq_entries - 1);
}

uint32_t nvme_doorbell(uint16_t qid, bool completion, uint32_t dstrd)
{
    return NVME_DOORBELLS + (2u * qid + (completion ? 1u : 0u)) * (4u << dstrd);
}
