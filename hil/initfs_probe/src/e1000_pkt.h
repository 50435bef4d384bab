/*
 * The e1000 (82540EM, QEMU's `-device e1000`) as plain data: registers, legacy descriptors (8254x Software
 * Developer's Manual 3.2.3 receive, 3.3.3 transmit, 13 registers), and the frames the probe sends and reads:
 * Ethernet II, ARP (RFC 826), IPv4 (RFC 791), UDP (RFC 768), TCP (RFC 793) with their checksums (RFC 1071).
 * No syscalls here: the host-side tests compile this file with the host's gcc and check the bytes.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define E1000_VENDOR_DEVICE 0x100e8086u /* config dword 0: device 0x100e, vendor 0x8086 */

enum e1000_reg {
    E1000_CTRL = 0x0000,
    E1000_STATUS = 0x0008,
    E1000_EERD = 0x0014,
    E1000_ICR = 0x00c0,
    E1000_IMS = 0x00d0,
    E1000_IMC = 0x00d8,
    E1000_RCTL = 0x0100,
    E1000_TCTL = 0x0400,
    E1000_TIPG = 0x0410,
    E1000_RDBAL = 0x2800,
    E1000_RDBAH = 0x2804,
    E1000_RDLEN = 0x2808,
    E1000_RDH = 0x2810,
    E1000_RDT = 0x2818,
    E1000_TDBAL = 0x3800,
    E1000_TDBAH = 0x3804,
    E1000_TDLEN = 0x3808,
    E1000_TDH = 0x3810,
    E1000_TDT = 0x3818,
    E1000_GPRC = 0x4074, /* good packets received (clears on read) */
    E1000_GPTC = 0x4080, /* good packets transmitted */
    E1000_MTA = 0x5200,
    E1000_RAL0 = 0x5400,
    E1000_RAH0 = 0x5404,
};

#define E1000_CTRL_ASDE (1u << 5)
#define E1000_CTRL_SLU (1u << 6)
#define E1000_CTRL_RST (1u << 26)
#define E1000_STATUS_LU (1u << 1)
#define E1000_EERD_START 1u
#define E1000_EERD_DONE (1u << 4)
#define E1000_RAH_AV (1u << 31)
#define E1000_RCTL_EN (1u << 1)
#define E1000_RCTL_BAM (1u << 15) /* broadcast accept */
#define E1000_RCTL_SECRC (1u << 26)
#define E1000_TCTL_EN (1u << 1)
#define E1000_TCTL_PSP (1u << 3)
#define E1000_ICR_TXDW (1u << 0)
#define E1000_ICR_LSC (1u << 2)
#define E1000_ICR_RXT0 (1u << 7)
#define E1000_RXD_DD 1u
#define E1000_RXD_EOP 2u
#define E1000_TXD_EOP 1u
#define E1000_TXD_IFCS 2u
#define E1000_TXD_RS 8u
#define E1000_TXD_DD 1u

struct e1000_rx_desc {
    uint64_t addr;
    uint16_t length;
    uint16_t checksum;
    uint8_t status;
    uint8_t errors;
    uint16_t special;
};

struct e1000_tx_desc {
    uint64_t addr;
    uint16_t length;
    uint8_t cso;
    uint8_t cmd;
    uint8_t status;
    uint8_t css;
    uint16_t special;
};

_Static_assert(sizeof(struct e1000_rx_desc) == 16, "legacy receive descriptor is 16 bytes");
_Static_assert(sizeof(struct e1000_tx_desc) == 16, "legacy transmit descriptor is 16 bytes");

uint32_t e1000_eerd(uint32_t word);             /* EERD value that starts reading an EEPROM word */
uint32_t e1000_tctl(void);                      /* enable, pad short packets, collision threshold/distance */
uint32_t e1000_rctl(void);                      /* enable, broadcasts, 2 KiB buffers, strip the CRC */
void e1000_mac_from_ra(uint32_t ral, uint32_t rah, uint8_t mac[6]);

/* ---- frames ---- */
#define ETH_HLEN 14
#define ETH_MIN 60 /* without the FCS, which the device appends (IFCS) */
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define IP_HLEN 20
#define UDP_HLEN 8
#define TCP_HLEN 20
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

struct endpoint {
    uint8_t mac[6];
    uint32_t ip; /* host order */
    uint16_t port;
};

uint16_t inet_checksum(const void *data, uint32_t len, uint32_t sum); /* sum: a partial sum to start from */
/* Each builder writes one whole frame into buf and returns its length (padded to ETH_MIN). */
uint32_t frame_arp(uint8_t *buf, uint16_t op, const struct endpoint *from, const uint8_t target_mac[6],
                   uint32_t target_ip);
uint32_t frame_udp(uint8_t *buf, const struct endpoint *from, const struct endpoint *to, uint16_t ip_id,
                   const void *payload, uint32_t len);
uint32_t frame_tcp(uint8_t *buf, const struct endpoint *from, const struct endpoint *to, uint32_t seq, uint32_t ack,
                   uint8_t flags, const void *payload, uint32_t len);

/* What a received frame is, as far as the probe cares. */
struct parsed {
    uint16_t ethertype;
    uint8_t src_mac[6];
    uint16_t arp_op;
    uint32_t arp_sender_ip, arp_target_ip;
    uint8_t arp_sender_mac[6];
    uint8_t ip_proto;
    bool ip_checksum_ok, l4_checksum_ok;
    uint32_t src_ip, dst_ip;
    uint16_t src_port, dst_port;
    uint32_t tcp_seq, tcp_ack;
    uint8_t tcp_flags;
    const uint8_t *payload;
    uint32_t payload_len;
};
bool frame_parse(const uint8_t *buf, uint32_t len, struct parsed *out); /* false: too short or malformed */
