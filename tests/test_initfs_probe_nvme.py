"""The redox-nvme variant's pure parts on the host: NVMe command layouts, the known-disk pattern, the build."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from hil.devices.disk import block_content
from hil.devices.storage import Nvme
from hil.errors import UsageError
from hil.guest.profiles.base import GuestOptions
from hil.guest.profiles.redox import RedoxOptions
from hil.initfs_probe import build, spec
from hil.initfs_probe.abi import ABIS, DEFAULT_ABI
from hil.probes.ktap import parse_text
from tests.helpers import HARNESS_PREAMBLE, host_harness

SRC = build.SOURCE_DIR
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")

# One command per line as hex: the harness calls the probe's own builders (src/nvme_cmd.c) and prints the bytes.
HARNESS = HARNESS_PREAMBLE + r"""
#include "nvme_cmd.h"
#include "pattern.h"
int main(void) {
    struct nvme_sqe s;
    nvme_identify(&s, 7, 1, NVME_CNS_CONTROLLER, 0x12345000ULL); dump(&s, sizeof s);
    nvme_create_cq(&s, 8, 3, 128, 0xabc000ULL, 1, 2); dump(&s, sizeof s);
    nvme_create_sq(&s, 9, 3, 128, 0xdef000ULL, 3); dump(&s, sizeof s);
    nvme_rw(&s, NVME_CMD_READ, 10, 1, 0x100000008ULL, 8, 0x5000ULL); dump(&s, sizeof s);
    printf("%x %x %x %x\n", nvme_cc_enable(), nvme_aqa(32, 16), nvme_doorbell(4, 1, 0), nvme_doorbell(1, 0, 2));
    static unsigned char block[DISK_BLOCK];
    disk_block_fill(block, 12345, 3); dump(block, DISK_BLOCK);
    printf("%llx ", (unsigned long long)disk_block_check(block, 3));
    printf("%llx ", (unsigned long long)disk_block_check(block, 4));
    block[4095] ^= 1; printf("%llx\n", (unsigned long long)disk_block_check(block, 3));
    return 0;
}
"""  # fmt: skip


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return host_harness(tmp_path_factory.mktemp("nvme-harness"), HARNESS, [SRC / "nvme_cmd.c", SRC / "pattern.c"], SRC)


def sqe(opcode: int, cid: int, nsid: int = 0, prp1: int = 0, cdw: tuple[int, ...] = ()) -> str:
    """A submission entry as the NVMe spec lays it out (4.2): byte 0 opcode, 2-3 CID, 4-7 NSID, 24-31 PRP1."""
    words = (*cdw, 0, 0, 0, 0, 0, 0)[:6]
    return struct.pack("<BBHIQQQQ6I", opcode, 0, cid, nsid, 0, 0, prp1, 0, *words).hex()


def test_identify_and_queue_creation_are_laid_out_as_the_spec_says(harness: list[str]) -> None:
    assert harness[0] == sqe(0x06, 7, 1, 0x12345000, (1,))
    assert harness[1] == sqe(0x05, 8, 0, 0xABC000, (127 << 16 | 3, 2 << 16 | 0b11))  # IV 2, IEN, PC
    assert harness[2] == sqe(0x01, 9, 0, 0xDEF000, (127 << 16 | 3, 3 << 16 | 1))  # CQ 3, PC


def test_a_read_carries_a_64_bit_lba_and_a_zero_based_count(harness: list[str]) -> None:
    assert harness[3] == sqe(0x02, 10, 1, 0x5000, (8, 1, 7))


def test_register_values_and_doorbells(harness: list[str]) -> None:
    cc, aqa, cq4, sq1 = (int(x, 16) for x in harness[4].split())
    assert cc == (4 << 20) | (6 << 16) | 1  # IOCQES 16 B, IOSQES 64 B, 4 KiB pages, enabled
    assert aqa == (15 << 16) | 31
    assert cq4 == 0x1000 + 9 * 4 and sq1 == 0x1000 + 2 * 16  # stride 4 << DSTRD


def test_the_c_pattern_is_hils_known_disk_content(harness: list[str]) -> None:
    assert bytes.fromhex(harness[5]) == block_content(12345, seed=3)
    assert harness[6].split() == ["3039", "ffffffffffffffff", "ffffffffffffffff"]  # right seed; wrong; one bit off


def test_the_nvme_variant_builds_its_own_case_list_and_target() -> None:
    variant = spec.VARIANTS["redox-nvme"]
    header = build.build_header(variant, ABIS[DEFAULT_ABI], "debug", spec.NvmeTarget("hil-nvme0", 64 << 20, 2))
    assert "X(nvme_pci)" in header and "X(sched_stress)" not in header
    assert '#define HIL_NVME_SERIAL "hil-nvme0"' in header and f"#define HIL_NVME_BYTES {64 << 20}ULL" in header
    assert "#define HIL_DISK_SEED 2ULL" in header
    assert "X(nvme_pci)" not in build.build_header(spec.VARIANTS["kernel-smoke"], ABIS[DEFAULT_ABI], "debug")


def test_bad_targets_and_channels_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="serial"):
        build.build_initfs_probe(tmp_path, "redox-nvme", nvme=spec.NvmeTarget('a"b', 1 << 20))
    with pytest.raises(UsageError, match="debug channel only"):
        build.build_initfs_probe(tmp_path, "redox-nvme", channel="regdump")


@needs_gcc
def test_the_nvme_variant_compiles(tmp_path: Path) -> None:
    out = build.build_initfs_probe(tmp_path, "redox-nvme", nvme=spec.NvmeTarget("hil-nvme0", 64 << 20))
    assert out.is_file() and out.with_suffix(".elf").is_file()


def test_the_redox_profile_takes_the_first_nvme_at_boot_as_the_probes_target() -> None:
    options = GuestOptions(own={"devices": (Nvme("a", size_mib=32, seed=1, chassis=1), Nvme("b", chassis=2))})
    assert RedoxOptions.of(options).nvme == spec.NvmeTarget("hil-a", 32 << 20, 1)
    assert RedoxOptions.of(GuestOptions()).nvme is None


def test_depth_output_parses_to_the_linux_probes_metric_names() -> None:
    text = "\n".join(
        ("KTAP version 1", "1..2", "ok 1 depth_8", "# metric depth_8.iops=3714 ops/s",
         "# metric depth_8.lat_p50_us=1327.406 us", "# metric depth_8.lat_p99_us=6647.962 us",
         "# metric depth_8.ooo=209 count", "not ok 2 nvme_pci # no NVMe controller on PCI (class 01:08:02)")
    )  # fmt: skip
    report = parse_text(text)
    assert report.errors == []
    depth, pci = report.cases
    assert {k: m.value for k, m in depth.metrics.items()} == {
        "iops": 3714, "lat_p50_us": 1327.406, "lat_p99_us": 6647.962, "ooo": 209}  # fmt: skip
    assert pci.status == "fail" and pci.reason.startswith("no NVMe controller on PCI")
