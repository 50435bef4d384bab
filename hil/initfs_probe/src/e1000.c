/*
 * The e1000 cases (variant redox-e1000): find QEMU's 82540EM on PCI, map BAR0, reset it, read its MAC from the
 * EEPROM and the receive-address registers, put receive and transmit rings in DMA memory, bring the link up,
 * then talk to QEMU's user network (10.0.2.0/24, gateway 10.0.2.2, us 10.0.2.15): ARP, UDP and TCP to host
 * listeners, a UDP echo for the host, and reception by interrupt. Frames and registers in e1000_pkt.c; every
 * kernel interface in hw.c.
 */
#include "e1000_pkt.h"
#include "hw.h"

#define RX_ENTRIES 32
#define TX_ENTRIES 8
#define BUF_BYTES 2048
#define GUEST_IP 0x0a00020fu   /* 10.0.2.15 */
#define GATEWAY_IP 0x0a000202u /* 10.0.2.2: the host, as QEMU's user network shows it */
#define ARP_ROUNDS 8
#define HOST_WAIT_NS (20 * NS_PER_S) /* the host's steps run alongside: give them time to start */
#define RETRY_NS (300 * NS_PER_MS)

static struct {
    bool found, mapped, reset, rings, link, arp;
    u32 bdf;
    u8 irq_line;
    u64 bar_phys, bar_size;
    volatile u32 *regs;
    volatile struct e1000_rx_desc *rx;
    volatile struct e1000_tx_desc *tx;
    u64 ring_phys, rx_buf_phys, tx_buf_phys;
    u8 *rx_buf, *tx_buf;
    u32 rx_next, tx_tail;
    struct endpoint me, gw;
    u64 rx_frames, tx_frames, arp_answered, ignored;
    long irq_fd; /* >= 0: receive waits for the interrupt count to move */
    u64 irq_seen, icr_reads;
} e = {.irq_fd = -1};

static u8 frame[BUF_BYTES]; /* the last received frame, copied out of its ring buffer */
static u8 out[BUF_BYTES];

static u32 rd(u32 reg) { return mmio_read32(e.regs, reg); }
static void wr(u32 reg, u32 value)
{
    mmio_barrier();
    mmio_write32(e.regs, reg, value);
}

static void say_mac(const char *what, const u8 *m)
{
    static const char hex[] = "0123456789abcdef";
    char text[18];
    for (int i = 0; i < 6; i++) {
        text[3 * i] = hex[m[i] >> 4];
        text[3 * i + 1] = hex[m[i] & 15];
        text[3 * i + 2] = i < 5 ? ':' : 0;
    }
    diag("%s %s", what, text);
}

/* ---------------------------------------------------------------- bring-up */

void case_e1000_pci(void)
{
    u64 seen;
    u32 before, after;
    if (!pci_case_enable("e1000", "8086:100e", PCI_ANY, E1000_VENDOR_DEVICE, &e.bdf, &seen, &before, &after))
        return;
    e.irq_line = (u8)pci_read32(e.bdf, 0x3c);
    e.found = true;
    pass();
    metric_u("functions_seen", seen, "count");
    diag("e1000 8086:100e at %u:%u.%u; command %x -> %x; interrupt line %u", (u64)(e.bdf >> 16),
         (u64)(e.bdf >> 11 & 31), (u64)(e.bdf >> 8 & 7), (u64)before, (u64)after, (u64)e.irq_line);
}

void case_e1000_bar_map(void)
{
    if (!need(e.found, "e1000_pci"))
        return;
    if (!pci_bar(e.bdf, 0, &e.bar_phys, &e.bar_size))
        return fail("e1000: BAR0 is not an assigned memory BAR (%x)", (u64)pci_read32(e.bdf, 0x10));
    long addr = phys_map(e.bar_phys, e.bar_size);
    if (is_err(addr))
        return fail("e1000: mapping BAR0 %x (%u KiB): %s returned %E", e.bar_phys, e.bar_size / 1024,
                    hw_failed_step(), addr);
    e.regs = (volatile u32 *)addr;
    u32 status = rd(E1000_STATUS);
    if (status == ~0u)
        return fail("e1000: BAR0 mapped at %x reads all ones: not the device's registers", (u64)addr);
    e.mapped = true;
    pass();
    metric_u("bar_kib", e.bar_size / 1024, "KiB");
    diag("BAR0 phys %x mapped uncached at %x (/scheme/memory/physical@uc); STATUS %x", e.bar_phys, (u64)addr,
         (u64)status);
}

static bool eeprom_word(u32 word, u32 *value)
{
    wr(E1000_EERD, e1000_eerd(word));
    u64 deadline = now_ns() + 100 * NS_PER_MS;
    while (now_ns() < deadline) {
        u32 v = rd(E1000_EERD);
        if (v & E1000_EERD_DONE) {
            *value = v >> 16;
            return true;
        }
    }
    return false;
}

static u8 hexval(char c) { return (u8)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10); }

static void configured_mac(u8 mac[6])
{
    const char *s = HIL_E1000_MAC; /* "52:54:00:..." */
    for (int i = 0; i < 6; i++)
        mac[i] = (u8)(hexval(s[3 * i]) << 4 | hexval(s[3 * i + 1]));
}

void case_e1000_reset_mac(void)
{
    if (!need(e.mapped, "e1000_bar_map"))
        return;
    u64 t0 = now_ns();
    wr(E1000_IMC, ~0u);
    wr(E1000_CTRL, rd(E1000_CTRL) | E1000_CTRL_RST);
    u64 deadline = t0 + NS_PER_S;
    while (rd(E1000_CTRL) & E1000_CTRL_RST && now_ns() < deadline)
        r_yield();
    if (rd(E1000_CTRL) & E1000_CTRL_RST)
        return fail("e1000: CTRL.RST still set 1 s after the reset");
    wr(E1000_IMC, ~0u);
    (void)rd(E1000_ICR);
    u8 want[6], eeprom[6], ra[6];
    configured_mac(want);
    for (u32 w = 0; w < 3; w++) {
        u32 v;
        if (!eeprom_word(w, &v))
            return fail("e1000: EEPROM word %u: EERD.DONE not set within 100 ms", (u64)w);
        eeprom[2 * w] = (u8)v;
        eeprom[2 * w + 1] = (u8)(v >> 8);
    }
    u32 rah = rd(E1000_RAH0);
    e1000_mac_from_ra(rd(E1000_RAL0), rah, ra);
    if (memcmp(eeprom, want, 6) != 0) {
        say_mac("EEPROM", eeprom);
        return fail("e1000: the EEPROM's MAC is not the one hil gave QEMU (%s)", HIL_E1000_MAC);
    }
    if (memcmp(ra, want, 6) != 0 || !(rah & E1000_RAH_AV)) {
        say_mac("RAL0/RAH0", ra);
        return fail("e1000: receive address 0 is not %s (valid bit %u)", HIL_E1000_MAC, (u64)(rah >> 31));
    }
    memcpy(e.me.mac, want, 6);
    e.me.ip = GUEST_IP;
    e.reset = true;
    pass();
    metric_ns_as_us("reset_us", now_ns() - t0);
    diag("MAC %s from EEPROM words 0-2 (EERD) and RAL0/RAH0 (address valid), as hil gave QEMU", HIL_E1000_MAC);
}

void case_e1000_rings(void)
{
    if (!need(e.reset, "e1000_reset_mac"))
        return;
    u64 pages = 1 + (RX_ENTRIES + TX_ENTRIES) * BUF_BYTES / 4096, phys;
    long addr = dma_alloc(pages, &phys);
    if (is_err(addr))
        return fail("e1000: DMA memory for the rings: %s returned %E", hw_failed_step(), addr);
    e.rx = (volatile struct e1000_rx_desc *)addr;
    e.tx = (volatile struct e1000_tx_desc *)(addr + 1024);
    e.ring_phys = phys;
    e.rx_buf = (u8 *)addr + 4096;
    e.rx_buf_phys = phys + 4096;
    e.tx_buf = e.rx_buf + RX_ENTRIES * BUF_BYTES;
    e.tx_buf_phys = e.rx_buf_phys + RX_ENTRIES * BUF_BYTES;
    for (u32 i = 0; i < RX_ENTRIES; i++)
        e.rx[i].addr = e.rx_buf_phys + i * BUF_BYTES;
    for (u32 i = 0; i < 128; i++)
        wr(E1000_MTA + 4 * i, 0);
    wr(E1000_RDBAL, (u32)phys);
    wr(E1000_RDBAH, (u32)(phys >> 32));
    wr(E1000_RDLEN, RX_ENTRIES * sizeof(struct e1000_rx_desc));
    wr(E1000_RDH, 0);
    wr(E1000_RDT, RX_ENTRIES - 1);
    wr(E1000_TDBAL, (u32)(phys + 1024));
    wr(E1000_TDBAH, (u32)((phys + 1024) >> 32));
    wr(E1000_TDLEN, TX_ENTRIES * sizeof(struct e1000_tx_desc));
    wr(E1000_TDH, 0);
    wr(E1000_TDT, 0);
    wr(E1000_TIPG, 10 | 8u << 10 | 6u << 20);
    wr(E1000_TCTL, e1000_tctl());
    wr(E1000_RCTL, e1000_rctl());
    (void)rd(E1000_GPRC);
    (void)rd(E1000_GPTC);
    if (rd(E1000_RDLEN) != RX_ENTRIES * 16 || rd(E1000_TDLEN) != TX_ENTRIES * 16 || !(rd(E1000_RCTL) & 2))
        return fail("e1000: ring registers did not keep their values (RDLEN %x TDLEN %x RCTL %x)",
                    (u64)rd(E1000_RDLEN), (u64)rd(E1000_TDLEN), (u64)rd(E1000_RCTL));
    e.rings = true;
    pass();
    metric_u("rx_descriptors", RX_ENTRIES, "count");
    metric_u("tx_descriptors", TX_ENTRIES, "count");
    diag("RX ring phys %x, TX ring phys %x, %u buffers of 2 KiB from /scheme/memory/zeroed@wb?phys_contiguous",
         phys, phys + 1024, (u64)(RX_ENTRIES + TX_ENTRIES));
}

void case_e1000_link(void)
{
    if (!need(e.rings, "e1000_rings"))
        return;
    u64 t0 = now_ns(), deadline = t0 + 3 * NS_PER_S;
    wr(E1000_CTRL, rd(E1000_CTRL) | E1000_CTRL_SLU | E1000_CTRL_ASDE);
    while (!(rd(E1000_STATUS) & E1000_STATUS_LU) && now_ns() < deadline)
        sleep_ns(NS_PER_MS);
    u32 status = rd(E1000_STATUS);
    if (!(status & E1000_STATUS_LU))
        return fail("e1000: STATUS.LU still 0 3 s after CTRL.SLU (STATUS %x)", (u64)status);
    e.link = true;
    pass();
    metric_ns_as_us("link_us", now_ns() - t0);
    diag("link up: STATUS %x (full duplex %u, speed code %u)", (u64)status, (u64)(status & 1), (u64)(status >> 6 & 3));
}

/* ---------------------------------------------------------------- frames in and out */

static bool transmit(u32 len)
{
    u32 slot = e.tx_tail;
    memcpy(e.tx_buf + slot * BUF_BYTES, out, len);
    volatile struct e1000_tx_desc *d = &e.tx[slot];
    d->addr = e.tx_buf_phys + slot * BUF_BYTES;
    d->length = (uint16_t)len;
    d->cmd = E1000_TXD_EOP | E1000_TXD_IFCS | E1000_TXD_RS;
    d->status = 0;
    e.tx_tail = (slot + 1) % TX_ENTRIES;
    wr(E1000_TDT, e.tx_tail);
    u64 deadline = now_ns() + NS_PER_S;
    while (!(d->status & E1000_TXD_DD) && now_ns() < deadline)
        r_yield();
    e.tx_frames += (d->status & E1000_TXD_DD) != 0;
    return (d->status & E1000_TXD_DD) != 0;
}

/* An ARP request for our address gets its reply here: QEMU's network asks before it delivers to us. */
static bool answer_arp(const struct parsed *p)
{
    if (p->ethertype != ETHERTYPE_ARP || p->arp_op != 1 || p->arp_target_ip != e.me.ip)
        return false;
    e.arp_answered++;
    transmit(frame_arp(out, 2, &e.me, p->arp_sender_mac, p->arp_sender_ip));
    return true;
}

/* The next frame off the ring, copied out; its descriptor goes straight back to the device. */
static bool receive_one(struct parsed *p)
{
    volatile struct e1000_rx_desc *d = &e.rx[e.rx_next];
    if (!(d->status & E1000_RXD_DD))
        return false;
    __asm__ volatile("lfence" ::: "memory");
    u32 len = d->length < BUF_BYTES ? d->length : BUF_BYTES;
    memcpy(frame, e.rx_buf + e.rx_next * BUF_BYTES, len);
    d->status = 0;
    wr(E1000_RDT, e.rx_next);
    e.rx_next = (e.rx_next + 1) % RX_ENTRIES;
    e.rx_frames++;
    return frame_parse(frame, len, p);
}

/* Interrupt mode: wait for the irq handle's count to move, read ICR (which lowers the line), acknowledge. */
static bool wait_interrupt(u64 deadline)
{
    u64 before = e.irq_seen, count = before;
    while (count == before && now_ns() < deadline) {
        if (irq_count(e.irq_fd, &count) != 8)
            r_yield();
    }
    if (count == before)
        return false;
    (void)rd(E1000_ICR);
    e.icr_reads++;
    e.irq_seen = count;
    irq_ack(e.irq_fd, count);
    return true;
}

typedef bool (*match_fn)(const struct parsed *p, const void *ctx);

/* A frame that `match` accepts before the deadline; ARP requests for us are answered on the way. Polling
 * looks at the ring until then; interrupt mode looks only after the interrupt count moved, and fails
 * without one (the frames that came are still taken off the ring). */
static bool wait_frame(match_fn match, const void *ctx, u64 deadline, struct parsed *p)
{
    for (;;) {
        bool interrupted = e.irq_fd >= 0 && wait_interrupt(deadline);
        while (receive_one(p)) {
            if (answer_arp(p))
                continue;
            if (match(p, ctx))
                return e.irq_fd < 0 || interrupted;
            e.ignored++;
        }
        if (now_ns() >= deadline)
            return false;
        if (e.irq_fd < 0)
            r_yield();
    }
}

/* ---------------------------------------------------------------- ARP */

static bool is_gateway_reply(const struct parsed *p, const void *ctx)
{
    (void)ctx;
    return p->ethertype == ETHERTYPE_ARP && p->arp_op == 2 && p->arp_sender_ip == GATEWAY_IP;
}

/* ARP_ROUNDS requests for 10.0.2.2; the first round trip and the mean of the others (QEMU holds frames for
 * up to a second after RCTL.EN is written, so the first one can measure that); false when a reply did not come. */
static bool arp_rounds(u64 *first_ns, u64 *mean_ns, u64 *done)
{
    static const u8 zero[6];
    u64 total = 0;
    for (*done = 0; *done < ARP_ROUNDS; (*done)++) {
        struct parsed p;
        u64 t0 = now_ns();
        if (!transmit(frame_arp(out, 1, &e.me, zero, GATEWAY_IP)))
            return false;
        if (!wait_frame(is_gateway_reply, NULL, t0 + 2 * NS_PER_S, &p))
            return false;
        u64 rtt = now_ns() - t0;
        if (*done == 0)
            *first_ns = rtt;
        else
            total += rtt;
        memcpy(e.gw.mac, p.arp_sender_mac, 6);
    }
    *mean_ns = total / (ARP_ROUNDS - 1);
    return true;
}

void case_e1000_arp(void)
{
    if (!need(e.link, "e1000_link"))
        return;
    u64 first = 0, mean = 0, done = 0;
    if (!arp_rounds(&first, &mean, &done))
        return fail("e1000: ARP request %u for 10.0.2.2: %s", done + 1,
                    e.tx_frames == 0 ? "the device did not transmit (TX descriptor not done)"
                                     : "no reply within 2 s (polling the RX ring)");
    e.gw.ip = GATEWAY_IP;
    e.arp = true;
    pass();
    metric_ns_as_us("arp_rtt_first_us", first);
    metric_ns_as_us("arp_rtt_us", mean);
    metric_u("rounds", done, "count");
    say_mac("10.0.2.2 is at", e.gw.mac);
}

/* ---------------------------------------------------------------- UDP and TCP with the host */

static bool same_bytes(const struct parsed *p, const char *want)
{
    return p->payload_len == str_len(want) && mem_eq_str(p->payload, p->payload_len, want);
}

struct flow {
    uint8_t proto;
    uint16_t local_port, remote_port;
};

static bool is_flow(const struct parsed *p, const void *ctx)
{
    const struct flow *f = ctx;
    return p->ethertype == ETHERTYPE_IPV4 && p->ip_proto == f->proto && p->dst_ip == e.me.ip &&
           p->dst_port == f->local_port && (f->remote_port == 0 || p->src_port == f->remote_port);
}

/* The host listener's port for `key`: hil picks a free one every run and passes it through fw_cfg. */
static bool host_port(const char *key, uint16_t *port)
{
    u64 value = 0;
    long r = run_value(key, &value);
    if (r != 0 || value == 0 || value > 65535) {
        fail("e1000: no host port %s in fw_cfg %s (run_value returned %E, value %u): boot the probe through hil",
             key, HIL_RUN_VALUES, r, value);
        return false;
    }
    *port = (uint16_t)value;
    return true;
}

void case_e1000_udp_to_host(void)
{
    if (!need(e.arp, "e1000_arp"))
        return;
    struct endpoint to = e.gw;
    if (!host_port("e1000.udp_port", &to.port))
        return;
    e.me.port = 40001;
    struct flow f = {IPPROTO_UDP_, e.me.port, to.port};
    const char *payload = HIL_E1000_UDP_PAYLOAD;
    u64 t_end = now_ns() + HOST_WAIT_NS, attempts = 0, rtt = 0;
    struct parsed p;
    bool answered = false;
    while (!answered && now_ns() < t_end) {
        u64 t0 = now_ns();
        attempts++;
        transmit(frame_udp(out, &e.me, &to, (uint16_t)attempts, payload, (u32)str_len(payload)));
        answered = wait_frame(is_flow, &f, t0 + RETRY_NS, &p);
        rtt = now_ns() - t0;
    }
    if (!answered)
        return fail("e1000: UDP to 10.0.2.2:%u: no answer from the host step in %u s (%u datagrams sent)",
                    (u64)to.port, HOST_WAIT_NS / NS_PER_S, attempts);
    if (!p.ip_checksum_ok || !p.l4_checksum_ok)
        return fail("e1000: the host's UDP answer has a bad %s checksum", p.ip_checksum_ok ? "UDP" : "IP");
    if (!same_bytes(&p, payload))
        return fail("e1000: the host answered %u bytes, not the %u it was sent", (u64)p.payload_len,
                    str_len(payload));
    pass();
    metric_ns_as_us("udp_rtt_us", rtt);
    metric_u("attempts", attempts, "count");
    diag("10.0.2.15:%u -> 10.0.2.2:%u (host 127.0.0.1:%u), the host step echoed %u bytes back", (u64)e.me.port,
         (u64)to.port, (u64)to.port, str_len(payload));
}

#define TCP_ISS 0x48494c00u

static bool tcp_connect(struct endpoint *to, const struct flow *f, struct parsed *p, u64 *attempts, u64 *rtt)
{
    u64 t_end = now_ns() + HOST_WAIT_NS;
    while (now_ns() < t_end) {
        u64 t0 = now_ns();
        (*attempts)++;
        transmit(frame_tcp(out, &e.me, to, TCP_ISS, 0, TCP_SYN, NULL, 0));
        bool got = wait_frame(is_flow, f, t0 + 2 * RETRY_NS, p);
        *rtt = now_ns() - t0;
        if (got && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK) && p->tcp_ack == TCP_ISS + 1)
            return true;
        if (got && !(p->tcp_flags & TCP_RST))
            return true; /* something else: the caller names it */
        sleep_ns(RETRY_NS); /* refused (RST) or silent: the host listener may not be up yet */
    }
    return false;
}

void case_e1000_tcp_to_host(void)
{
    if (!need(e.arp, "e1000_arp"))
        return;
    struct endpoint to = e.gw;
    if (!host_port("e1000.tcp_port", &to.port))
        return;
    e.me.port = 40002;
    struct flow f = {IPPROTO_TCP_, e.me.port, to.port};
    struct parsed p;
    u64 attempts = 0, rtt = 0;
    if (!tcp_connect(&to, &f, &p, &attempts, &rtt))
        return fail("e1000: TCP SYN to 10.0.2.2:%u: no SYN-ACK in %u s (%u SYNs, refused or silent)", (u64)to.port,
                    HOST_WAIT_NS / NS_PER_S, attempts);
    if ((p.tcp_flags & (TCP_SYN | TCP_ACK)) != (TCP_SYN | TCP_ACK) || p.tcp_ack != TCP_ISS + 1 || !p.l4_checksum_ok)
        return fail("e1000: answer to our SYN: flags %x ack %x (want SYN+ACK, ack %x), checksum ok %u",
                    (u64)p.tcp_flags, (u64)p.tcp_ack, (u64)TCP_ISS + 1, (u64)p.l4_checksum_ok);
    const char *payload = HIL_E1000_TCP_PAYLOAD;
    u32 len = (u32)str_len(payload), seq = TCP_ISS + 1, ack = p.tcp_seq + 1;
    transmit(frame_tcp(out, &e.me, &to, seq, ack, TCP_ACK | TCP_PSH, payload, len));
    u64 deadline = now_ns() + 3 * NS_PER_S;
    bool acked = false;
    while (!acked && wait_frame(is_flow, &f, deadline, &p))
        acked = (p.tcp_flags & TCP_ACK) && p.tcp_ack == seq + len;
    transmit(frame_tcp(out, &e.me, &to, seq + len, ack, TCP_RST | TCP_ACK, NULL, 0));
    if (!acked)
        return fail("e1000: TCP to 10.0.2.2:%u: the %u payload bytes were not acknowledged within 3 s", (u64)to.port,
                    (u64)len);
    pass();
    metric_ns_as_us("syn_ack_us", rtt);
    metric_u("attempts", attempts, "count");
    diag("SYN -> SYN-ACK -> %u bytes acknowledged by 10.0.2.2:%u (the host step accepts on 127.0.0.1), then RST",
         (u64)len, (u64)to.port);
}

void case_e1000_udp_echo(void)
{
    if (!need(e.arp, "e1000_arp"))
        return;
    struct flow f = {IPPROTO_UDP_, HIL_E1000_ECHO_PORT, 0};
    struct parsed p;
    u64 t0 = now_ns();
    if (!wait_frame(is_flow, &f, t0 + HOST_WAIT_NS, &p))
        return fail("e1000: no UDP datagram to 10.0.2.15:%u (the forwarded port) in %u s", (u64)f.local_port,
                    HOST_WAIT_NS / NS_PER_S);
    u64 waited = now_ns() - t0;
    if (!p.ip_checksum_ok || !p.l4_checksum_ok)
        return fail("e1000: the host's datagram has a bad %s checksum", p.ip_checksum_ok ? "UDP" : "IP");
    static u8 payload[BUF_BYTES];
    u32 len = p.payload_len < 1400 ? p.payload_len : 1400;
    memcpy(payload, p.payload, len);
    struct endpoint to = {.ip = p.src_ip, .port = p.src_port};
    memcpy(to.mac, p.src_mac, 6);
    e.me.port = f.local_port;
    u64 t1 = now_ns();
    if (!transmit(frame_udp(out, &e.me, &to, 0x4543, payload, len)))
        return fail("e1000: the echo was not transmitted (TX descriptor not done in 1 s)");
    pass();
    metric_ns_as_us("host_wait_us", waited);
    metric_ns_as_us("echo_tx_us", now_ns() - t1);
    metric_u("bytes", len, "bytes");
    diag("%u bytes from 10.0.2.2:%u to the forwarded port %u, echoed back (the host step checks them)", (u64)len,
         (u64)to.port, (u64)f.local_port);
}

/* ---------------------------------------------------------------- interrupts and counters */

void case_e1000_irq_intx(void)
{
    if (!need(e.arp, "e1000_arp"))
        return;
    if (e.irq_line == 0 || e.irq_line >= 16)
        return skip("the firmware assigned no legacy interrupt line (config 0x3c = %u)", (u64)e.irq_line);
    const char *path;
    long fd = irq_open_line(e.irq_line, &path);
    if (is_err(fd))
        return fail("e1000: open %s returned %E", path, fd);
    irq_count(fd, &e.irq_seen);
    (void)rd(E1000_ICR);
    irq_ack(fd, e.irq_seen);
    u64 base = e.irq_seen, rx0 = e.rx_frames, first = 0, mean = 0, done = 0;
    e.irq_fd = fd;
    wr(E1000_IMS, E1000_ICR_RXT0);
    bool ok = arp_rounds(&first, &mean, &done);
    wr(E1000_IMC, ~0u);
    e.irq_fd = -1;
    r_close(fd);
    u64 interrupts = e.irq_seen - base;
    if (!ok)
        return fail("e1000: ARP round %u by interrupt: no reply with an interrupt within 2 s (%u interrupts on "
                    "%s, %u frames taken)", done + 1, interrupts, path, e.rx_frames - rx0);
    if (interrupts == 0)
        return fail("e1000: %u ARP replies arrived but %s counted no interrupt", done, path);
    pass();
    metric_u("interrupts", interrupts, "count");
    metric_u("rx_frames", e.rx_frames - rx0, "count");
    metric_ns_as_us("arp_rtt_us", mean);
    diag("legacy line %u through %s: each wait saw the count move, read ICR, then acknowledged", (u64)e.irq_line,
         path);
}

void case_e1000_counters(void)
{
    if (!need(e.rings, "e1000_rings"))
        return;
    u64 gprc = rd(E1000_GPRC), gptc = rd(E1000_GPTC);
    if (gptc != e.tx_frames)
        return fail("e1000: GPTC counts %u frames sent, the probe saw %u transmit descriptors done", gptc,
                    e.tx_frames);
    if (gprc < e.rx_frames)
        return fail("e1000: GPRC counts %u frames received, fewer than the %u the probe took off the ring", gprc,
                    e.rx_frames);
    pass();
    metric_u("tx_frames", e.tx_frames, "count");
    metric_u("rx_frames", e.rx_frames, "count");
    metric_u("arp_answered", e.arp_answered, "count");
    metric_u("ignored", e.ignored, "count");
    diag("device counters GPTC %u GPRC %u agree with the rings", gptc, gprc);
}
