/*
 * The known content of hil's test disks (hil/devices/disk.py block_content): every 4 KiB block is "HIL-DISK",
 * the block number and the seed (u64 little-endian each), then SHA-256 of those 24 bytes repeated. Pure code:
 * the host-side tests compile it and compare with the Python original.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define DISK_BLOCK 4096

/* SHA-256 of a message shorter than 56 bytes (one block is all the pattern needs). */
void sha256_short(const uint8_t *msg, unsigned len, uint8_t out[32]);
void disk_block_fill(uint8_t *block, uint64_t index, uint64_t seed);
/* Which block this is, if every byte is the known content for that block and seed; else ~0. */
uint64_t disk_block_check(const uint8_t *block, uint64_t seed);
