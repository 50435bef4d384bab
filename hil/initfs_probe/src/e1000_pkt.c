/* Frames and register values for the e1000 cases; see e1000_pkt.h. Pure data, compiled on the host by tests. */
#include "e1000_pkt.h"

uint32_t e1000_eerd(uint32_t word) { return word << 8 | E1000_EERD_START; }
uint32_t e1000_tctl(void) { return E1000_TCTL_EN | E1000_TCTL_PSP | 0x0fu << 4 | 0x40u << 12; }
uint32_t e1000_rctl(void) { return E1000_RCTL_EN | E1000_RCTL_BAM | E1000_RCTL_SECRC; }

void e1000_mac_from_ra(uint32_t ral, uint32_t rah, uint8_t mac[6])
{
    for (int i = 0; i < 4; i++)
        mac[i] = (uint8_t)(ral >> (8 * i));
    mac[4] = (uint8_t)rah;
    mac[5] = (uint8_t)(rah >> 8);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }
static void copy(uint8_t *dst, const void *src, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        dst[i] = ((const uint8_t *)src)[i];
}

static uint32_t sum_words(const uint8_t *p, uint32_t len, uint32_t sum)
{
    for (uint32_t i = 0; i + 1 < len; i += 2)
        sum += get16(p + i);
    if (len & 1)
        sum += (uint32_t)p[len - 1] << 8;
    return sum;
}

uint16_t inet_checksum(const void *data, uint32_t len, uint32_t sum)
{
    sum = sum_words(data, len, sum);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static uint32_t pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint32_t len)
{
    return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
}

static uint8_t *eth(uint8_t *buf, const uint8_t dst[6], const uint8_t src[6], uint16_t type)
{
    copy(buf, dst, 6);
    copy(buf + 6, src, 6);
    put16(buf + 12, type);
    return buf + ETH_HLEN;
}

static uint32_t padded(uint8_t *buf, uint32_t len)
{
    for (; len < ETH_MIN; len++)
        buf[len] = 0;
    return len;
}

uint32_t frame_arp(uint8_t *buf, uint16_t op, const struct endpoint *from, const uint8_t target_mac[6],
                   uint32_t target_ip)
{
    static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    uint8_t *a = eth(buf, op == 1 ? broadcast : target_mac, from->mac, ETHERTYPE_ARP);
    put16(a, 1);      /* Ethernet */
    put16(a + 2, ETHERTYPE_IPV4);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, op); /* 1 request, 2 reply */
    copy(a + 8, from->mac, 6);
    put32(a + 14, from->ip);
    copy(a + 18, target_mac, 6);
    put32(a + 24, target_ip);
    return padded(buf, ETH_HLEN + 28);
}

static uint8_t *ipv4(uint8_t *p, const struct endpoint *from, const struct endpoint *to, uint8_t proto,
                     uint16_t id, uint32_t l4_len)
{
    p[0] = 0x45;
    p[1] = 0;
    put16(p + 2, (uint16_t)(IP_HLEN + l4_len));
    put16(p + 4, id);
    put16(p + 6, 0x4000); /* don't fragment */
    p[8] = 64;
    p[9] = proto;
    put16(p + 10, 0);
    put32(p + 12, from->ip);
    put32(p + 16, to->ip);
    put16(p + 10, inet_checksum(p, IP_HLEN, 0));
    return p + IP_HLEN;
}

uint32_t frame_udp(uint8_t *buf, const struct endpoint *from, const struct endpoint *to, uint16_t ip_id,
                   const void *payload, uint32_t len)
{
    uint8_t *u = ipv4(eth(buf, to->mac, from->mac, ETHERTYPE_IPV4), from, to, IPPROTO_UDP_, ip_id, UDP_HLEN + len);
    put16(u, from->port);
    put16(u + 2, to->port);
    put16(u + 4, (uint16_t)(UDP_HLEN + len));
    put16(u + 6, 0);
    copy(u + UDP_HLEN, payload, len);
    uint16_t sum = inet_checksum(u, UDP_HLEN + len, pseudo_sum(from->ip, to->ip, IPPROTO_UDP_, UDP_HLEN + len));
    put16(u + 6, sum ? sum : 0xffff);
    return padded(buf, ETH_HLEN + IP_HLEN + UDP_HLEN + len);
}

uint32_t frame_tcp(uint8_t *buf, const struct endpoint *from, const struct endpoint *to, uint32_t seq, uint32_t ack,
                   uint8_t flags, const void *payload, uint32_t len)
{
    uint8_t *t = ipv4(eth(buf, to->mac, from->mac, ETHERTYPE_IPV4), from, to, IPPROTO_TCP_, 0, TCP_HLEN + len);
    put16(t, from->port);
    put16(t + 2, to->port);
    put32(t + 4, seq);
    put32(t + 8, ack);
    t[12] = (TCP_HLEN / 4) << 4;
    t[13] = flags;
    put16(t + 14, 8192); /* window */
    put16(t + 16, 0);
    put16(t + 18, 0);
    copy(t + TCP_HLEN, payload, len);
    put16(t + 16, inet_checksum(t, TCP_HLEN + len, pseudo_sum(from->ip, to->ip, IPPROTO_TCP_, TCP_HLEN + len)));
    return padded(buf, ETH_HLEN + IP_HLEN + TCP_HLEN + len);
}

static bool parse_l4(const uint8_t *l4, uint32_t l4_len, struct parsed *out)
{
    uint32_t pseudo = pseudo_sum(out->src_ip, out->dst_ip, out->ip_proto, l4_len);
    if (out->ip_proto == IPPROTO_UDP_) {
        if (l4_len < UDP_HLEN || get16(l4 + 4) > l4_len || get16(l4 + 4) < UDP_HLEN)
            return false;
        l4_len = get16(l4 + 4);
        pseudo = pseudo_sum(out->src_ip, out->dst_ip, out->ip_proto, l4_len);
        out->l4_checksum_ok = get16(l4 + 6) == 0 || inet_checksum(l4, l4_len, pseudo) == 0;
        out->payload = l4 + UDP_HLEN;
        out->payload_len = l4_len - UDP_HLEN;
    } else if (out->ip_proto == IPPROTO_TCP_) {
        uint32_t off = (uint32_t)(l4[12] >> 4) * 4;
        if (l4_len < TCP_HLEN || off < TCP_HLEN || off > l4_len)
            return false;
        out->tcp_seq = get32(l4 + 4);
        out->tcp_ack = get32(l4 + 8);
        out->tcp_flags = l4[13];
        out->l4_checksum_ok = inet_checksum(l4, l4_len, pseudo) == 0;
        out->payload = l4 + off;
        out->payload_len = l4_len - off;
    } else {
        return true;
    }
    out->src_port = get16(l4);
    out->dst_port = get16(l4 + 2);
    return true;
}

bool frame_parse(const uint8_t *buf, uint32_t len, struct parsed *out)
{
    *out = (struct parsed){0};
    if (len < ETH_HLEN)
        return false;
    copy(out->src_mac, buf + 6, 6);
    out->ethertype = get16(buf + 12);
    const uint8_t *p = buf + ETH_HLEN;
    len -= ETH_HLEN;
    if (out->ethertype == ETHERTYPE_ARP) {
        if (len < 28 || get16(p) != 1 || get16(p + 2) != ETHERTYPE_IPV4)
            return false;
        out->arp_op = get16(p + 6);
        copy(out->arp_sender_mac, p + 8, 6);
        out->arp_sender_ip = get32(p + 14);
        out->arp_target_ip = get32(p + 24);
        return true;
    }
    if (out->ethertype != ETHERTYPE_IPV4)
        return true;
    uint32_t ihl = (uint32_t)(p[0] & 0xf) * 4, total = len >= IP_HLEN ? get16(p + 2) : 0;
    if (len < IP_HLEN || p[0] >> 4 != 4 || ihl < IP_HLEN || total > len || total < ihl)
        return false;
    out->ip_checksum_ok = inet_checksum(p, ihl, 0) == 0;
    out->ip_proto = p[9];
    out->src_ip = get32(p + 12);
    out->dst_ip = get32(p + 16);
    return parse_l4(p + ihl, total - ihl, out);
}
