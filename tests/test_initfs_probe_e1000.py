"""The redox-e1000 variant's pure parts on the host: e1000 descriptors and registers, the frames it sends
(ARP, IPv4/UDP, IPv4/TCP with their checksums) and its frame parser, compiled with the host's gcc and checked
against layouts built here from the specs; the build target, the device and scenario keys behind it."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from hil.devices.catalog import DeviceSpecError, device_from_table
from hil.devices.net import E1000
from hil.devices.storage import UsbStorage
from hil.devices.usb import UsbInput, Xhci
from hil.errors import UsageError
from hil.guest.profiles.base import GuestOptions
from hil.guest.profiles.redox import RedoxOptions
from hil.initfs_probe import build, spec
from hil.initfs_probe.abi import ABIS, DEFAULT_ABI
from hil.scenario import ScenarioError, load_scenario, parse_scenario
from tests.helpers import HARNESS_PREAMBLE, host_harness

SRC = build.SOURCE_DIR
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")

HARNESS = HARNESS_PREAMBLE + r"""
#include <stddef.h>
#include "e1000_pkt.h"
static void parsed(const uint8_t *f, uint32_t n)
{
    struct parsed p;
    int ok = frame_parse(f, n, &p);
    printf("%d %x %u %x %x %u %u %u %u %u %x %x %x %u\n", ok, p.ethertype, p.arp_op, p.src_ip, p.dst_ip, p.ip_proto,
           p.ip_checksum_ok, p.l4_checksum_ok, p.src_port, p.dst_port, p.tcp_seq, p.tcp_ack, p.tcp_flags,
           p.payload_len);
}
int main(void) {
    printf("%zu %zu %zu %zu %zu %zu\n", offsetof(struct e1000_rx_desc, length),
           offsetof(struct e1000_rx_desc, status), offsetof(struct e1000_rx_desc, special),
           offsetof(struct e1000_tx_desc, length), offsetof(struct e1000_tx_desc, cmd),
           offsetof(struct e1000_tx_desc, status));
    printf("%x %x %x\n", e1000_eerd(2), e1000_tctl(), e1000_rctl());
    uint8_t mac[6];
    e1000_mac_from_ra(0x00545452u, 0x80005634u, mac); dump(mac, 6);
    struct endpoint me = {{0x52, 0x54, 0x00, 0x68, 0x69, 0x6c}, 0x0a00020f, 40001};
    struct endpoint gw = {{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}, 0x0a000202, 5555};
    static const uint8_t zero[6];
    static uint8_t f[2048];
    uint32_t n = frame_arp(f, 1, &me, zero, 0x0a000202); dump(f, n); parsed(f, n);
    n = frame_udp(f, &me, &gw, 7, "hello", 5); dump(f, n); parsed(f, n);
    n = frame_tcp(f, &me, &gw, 0x48494c00u, 0x1234, TCP_ACK | TCP_PSH, "tcp!", 4); dump(f, n); parsed(f, n);
    f[ETH_HLEN + IP_HLEN + TCP_HLEN] ^= 1; parsed(f, n);
    f[ETH_HLEN + 8] ^= 1; parsed(f, n);
    parsed(f, 10);
    return 0;
}
"""  # fmt: skip


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return host_harness(tmp_path_factory.mktemp("e1000-harness"), HARNESS, [SRC / "e1000_pkt.c"], SRC)


ME_MAC, GW_MAC = bytes.fromhex("52540068696c"), bytes.fromhex("52550a000202")
ME_IP, GW_IP = bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2])


def checksum(data: bytes) -> int:
    """RFC 1071: the ones' complement of the ones' complement sum of 16-bit big-endian words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(proto: int, l4: bytes, ident: int) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident, 0x4000, 64, proto, 0, ME_IP, GW_IP)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + l4


def pseudo(proto: int, length: int) -> bytes:
    return ME_IP + GW_IP + struct.pack("!BBH", 0, proto, length)


def ethernet(dst: bytes, ethertype: int, body: bytes) -> bytes:
    frame = dst + ME_MAC + struct.pack("!H", ethertype) + body
    return frame + b"\0" * (60 - len(frame)) if len(frame) < 60 else frame


def test_descriptors_are_the_8254x_legacy_layouts(harness: list[str]) -> None:
    # receive: addr 0-7, length 8-9, checksum 10-11, status 12, errors 13, special 14-15 (SDM 3.2.3);
    # transmit: addr 0-7, length 8-9, CSO 10, CMD 11, STA 12, CSS 13, special 14-15 (SDM 3.3.3)
    assert harness[0].split() == ["8", "12", "14", "8", "11", "12"]


def test_register_values(harness: list[str]) -> None:
    eerd, tctl, rctl = (int(x, 16) for x in harness[1].split())
    assert eerd == 2 << 8 | 1  # word address in bits 8+, START in bit 0
    assert tctl == 1 << 1 | 1 << 3 | 0x0F << 4 | 0x40 << 12  # EN, PSP, CT 15, COLD 64
    assert rctl == 1 << 1 | 1 << 15 | 1 << 26  # EN, BAM, SECRC; BSIZE 0 = 2048 bytes
    assert bytes.fromhex(harness[2]) == bytes.fromhex("525454003456")  # RAL low byte first, then RAH


def test_the_arp_request_asks_for_the_gateway(harness: list[str]) -> None:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, ME_MAC, ME_IP, b"\0" * 6, GW_IP)
    assert bytes.fromhex(harness[3]) == ethernet(b"\xff" * 6, 0x0806, body)
    assert harness[4].split()[:4] == ["1", "806", "1", "0"]


def test_the_udp_datagram_and_its_checksums(harness: list[str]) -> None:
    udp = struct.pack("!HHHH", 40001, 5555, 13, 0) + b"hello"
    udp = udp[:6] + struct.pack("!H", checksum(pseudo(17, 13) + udp)) + udp[8:]
    assert bytes.fromhex(harness[5]) == ethernet(GW_MAC, 0x0800, ipv4(17, udp, 7))
    assert harness[6].split() == ["1", "800", "0", "a00020f", "a000202", "17", "1", "1", "40001", "5555", "0", "0",
                                  "0", "5"]  # fmt: skip


def test_the_tcp_segment_and_its_checksum(harness: list[str]) -> None:
    tcp = struct.pack("!HHIIBBHHH", 40001, 5555, 0x48494C00, 0x1234, 5 << 4, 0x18, 8192, 0, 0) + b"tcp!"
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo(6, len(tcp)) + tcp)) + tcp[18:]
    assert bytes.fromhex(harness[7]) == ethernet(GW_MAC, 0x0800, ipv4(6, tcp, 0))
    assert harness[8].split()[5:] == ["6", "1", "1", "40001", "5555", "48494c00", "1234", "18", "4"]


def test_the_parser_notices_bad_checksums_and_short_frames(harness: list[str]) -> None:
    assert harness[9].split()[6:8] == ["1", "0"]  # a payload bit flipped: TCP checksum wrong
    assert harness[10].split()[6] == "0"  # the TTL changed: IP header checksum wrong
    assert harness[11].split()[0] == "0"


def test_the_e1000_variant_builds_its_cases_and_target() -> None:
    target = spec.E1000Target("52:54:00:68:69:6c", 40000, 40001, 7001)
    header = build.build_header(spec.VARIANTS["redox-e1000"], ABIS[DEFAULT_ABI], "debug", e1000=target)
    assert "X(e1000_arp)" in header and "X(nvme_pci)" not in header
    assert '#define HIL_E1000_MAC "52:54:00:68:69:6c"' in header
    assert "#define HIL_E1000_ECHO_PORT 7001" in header
    # The host ports change every run: they come through fw_cfg, so they must not change the build.
    assert "40000" not in header and f'#define HIL_RUN_VALUES "{spec.RUN_VALUES_FW_CFG}"' in header
    with pytest.raises(UsageError, match="MAC"):
        build.build_initfs_probe(Path("/nonexistent"), "redox-e1000", e1000=spec.E1000Target("52:54:00"))


@needs_gcc
def test_the_e1000_variant_compiles(tmp_path: Path) -> None:
    out = build.build_initfs_probe(tmp_path, "redox-e1000", e1000=spec.E1000Target("52:54:00:68:69:6c", 1, 2))
    assert out.is_file() and out.with_suffix(".elf").is_file()


def test_the_profile_builds_the_probe_for_the_first_e1000() -> None:
    net = E1000("net0", (("udp", 7005),), mac="52:54:00:00:00:01", listen=("udp", "tcp"))
    target = RedoxOptions.of(GuestOptions(own={"devices": (net,)})).e1000
    assert target == spec.E1000Target("52:54:00:00:00:01", net.listeners["udp"], net.listeners["tcp"], 7005)
    assert "mac=52:54:00:00:00:01" in " ".join(net.qemu_args())


@pytest.mark.parametrize(("table", "key"), [
    ({"mac": "53:54:00:00:00:01"}, "mac"),  # multicast bit set
    ({"mac": "52:54:00"}, "mac"),
    ({"listen": ["sctp"]}, "listen"),
    ({"listen": "udp"}, "listen"),
])  # fmt: skip
def test_bad_e1000_keys_name_the_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(DeviceSpecError) as err:
        device_from_table({"kind": "e1000", "id": "net0", **table}, 0)
    assert err.value.key == key


def test_the_scenario_payloads_are_the_ones_the_probe_sends() -> None:
    scenario = load_scenario("redox-e1000")
    sent = {step["proto"]: step["payload"] for step in scenario.steps if step.kind == "host"
            and step["host"] == "receive"}  # fmt: skip
    assert sent == {"udp": spec.E1000_UDP_PAYLOAD, "tcp": spec.E1000_TCP_PAYLOAD}
    assert all(step["background"] for step in scenario.steps if step.kind == "host")


BASE = """
name = "x"
guest = "redox-kernel"
[[devices]]
kind = "e1000"
id = "net0"
{device}
[[steps]]
host = "receive"
proto = "udp"
{step}
"""


@pytest.mark.parametrize(("device", "step", "where"), [
    ("", "", "guest_command"),  # no command and no listener
    ('listen = ["udp"]', 'guest_command = "x"\nbackground = true', "background"),
    ('listen = ["udp"]', 'background = "yes"', "background"),
])  # fmt: skip
def test_host_steps_without_a_guest_command_need_a_listener(tmp_path: Path, device: str, step: str,
                                                             where: str) -> None:
    path = tmp_path / "x.toml"
    path.write_text(BASE.format(device=device, step=step))
    with pytest.raises(ScenarioError, match=where):
        parse_scenario(path)


def test_the_profile_counts_the_devices_on_the_first_controller() -> None:
    devices = (Xhci("xhci0", "nec-usb-xhci"), UsbStorage("usb0", "xhci0"), UsbInput("kbd0", "usb-kbd", "xhci0"))
    assert RedoxOptions.of(GuestOptions(own={"devices": devices})).xhci == spec.XhciTarget(
        "nec-usb-xhci", 2, (0x46F40001, 0x06270001), storage_seed=0)


@needs_gcc
def test_runs_with_other_host_ports_share_one_probe_and_pass_the_ports_through_fw_cfg(tmp_path: Path) -> None:
    first, second = (spec.E1000Target("52:54:00:68:69:6c", udp, tcp) for udp, tcp in ((40000, 40001), (50000, 50001)))
    built = [build.build_initfs_probe(tmp_path, "redox-e1000", e1000=t) for t in (first, second)]
    assert built[0] == built[1]  # one build (and so one cached disk) for every run
    assert spec.run_values_text(second.run_values()) == "e1000.udp_port=50000;e1000.tcp_port=50001"
