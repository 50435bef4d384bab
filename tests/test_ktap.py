"""The probe output parser: well-formed runs, truncation, aborts, noise, bad metrics, and inputs it must survive."""

import json

import pytest

from hil.probes.ktap import (
    ABORTED_REASON,
    TRUNCATED_REASON,
    Metric,
    ProbeParser,
    parse_metric_value,
    parse_text,
)

WELL_FORMED = """\
KTAP version 1
1..4
# probe hil-uring-probe 1 linux
# cases setup nop_batch depth_8 timeout
# uname Linux 6.1.0-28-amd64 x86_64
ok 1 setup
# metric setup.features=0x3fff flags
# features: single_mmap nodrop
ok 2 nop_batch
# metric nop_batch.iops=812345 ops/s
# heartbeat depth_8 1000
not ok 3 depth_8 # read returned -5 at offset 4096
# metric depth_8.lat_p50_us=123.4 us
# metric depth_8.lat_p99_us=1.5e3 us
# first bad block 1
ok 4 timeout # SKIP no timeouts here
"""

# Captured from the reference guest (Linux 6.1, TCG, -smp 2), run from an init hook; some metric lines trimmed.
REAL_LINUX_CAPTURE = """\
[    2.867039] Run /init as init process
hil-init: mounted
hil-init: modules loaded
hil-init: network eth0 10.0.2.15
hil-init: sshd started
hil-init: device /dev/nvme0n1 present
KTAP version 1
1..11
# probe hil-uring-probe 1 linux
# cases setup nop_batch out_of_order odirect_write_read depth_1 depth_8 depth_32 depth_64 cancel linked timeout
# uname Linux 6.1.0-56-amd64 x86_64
# device /dev/nvme0n1 scratch 1048576+4194304 seed 0xd112a75e5f56a830 ops 5000
ok 1 setup
# metric setup.features=0x1fff flags
# metric setup.sq_entries=8 count
# metric setup.cq_entries=16 count
# features: single_mmap nodrop submit_stable rw_cur_pos cur_personality fast_poll poll_32bits
# metric setup.opcodes=49 count
ok 2 nop_batch
# metric nop_batch.iops=477884 ops/s
ok 3 out_of_order
# metric out_of_order.out_of_order_completions=4 count
ok 4 odirect_write_read
# metric odirect_write_read.write_mib_s=105.6 MiB/s
# metric odirect_write_read.read_mib_s=139.6 MiB/s
# metric odirect_write_read.blocks=1024 count
# seed 0xd112a75e5f56a830, blocks at 1048576..5242880
# heartbeat depth_1 3799
ok 5 depth_1
# metric depth_1.iops=3840 ops/s
# metric depth_1.lat_p50_us=213.5 us
# metric depth_1.lat_p99_us=640.0 us
# metric depth_1.ooo=0 count
ok 6 depth_8
# metric depth_8.iops=15681 ops/s
# metric depth_8.lat_p50_us=417.1 us
# metric depth_8.lat_p99_us=872.1 us
# metric depth_8.ooo=4145 count
ok 7 depth_32
ok 8 depth_64
ok 9 cancel
# metric cancel.elapsed_us=1339.4 us
ok 10 linked
ok 11 timeout
# metric timeout.elapsed_ms=52.0 ms
# metric timeout.counted_elapsed_ms=0.9 ms
probe exit 0 start 7.71 end 9.96
hil-init: hook 50-probe.sh exit 0
HIL-GUEST-READY
"""

# The same guest with --ops 10000000 --case-timeout 2 --depths 1,8: the per-case alarm fired in depth_1.
REAL_LINUX_ABORT = """\
KTAP version 1
1..9
# probe hil-uring-probe 1 linux
# cases setup nop_batch out_of_order odirect_write_read depth_1 depth_8 cancel linked timeout
ok 1 setup
ok 2 nop_batch
ok 3 out_of_order
ok 4 odirect_write_read
# heartbeat depth_1 4561
not ok 5 depth_1 # timed out after 2 s
# probe aborted
probe exit 1 start 6.56 end 8.77
"""


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _streamed(lines: list[str]) -> ProbeParser:
    parser = ProbeParser()
    for line in lines:
        parser.feed(line)
    return parser


def test_well_formed_run_gives_cases_metrics_and_diagnostics() -> None:
    report = parse_text(WELL_FORMED)
    assert report.plan == 4
    assert report.errors == []
    assert [(case.number, case.name, case.status) for case in report.cases] == [
        (1, "setup", "pass"),
        (2, "nop_batch", "pass"),
        (3, "depth_8", "fail"),
        (4, "timeout", "skip"),
    ]
    setup, _, depth, timeout = report.cases
    assert setup.metrics["features"] == Metric(value=0x3FFF, unit="flags", raw="0x3fff")
    assert setup.diagnostics == ["features: single_mmap nodrop"]
    assert depth.reason == "read returned -5 at offset 4096"
    assert depth.metrics["lat_p50_us"].value == pytest.approx(123.4)
    assert depth.metrics["lat_p99_us"].value == 1500.0
    assert depth.diagnostics == ["first bad block 1"]
    assert timeout.reason == "no timeouts here"
    assert report.probe is not None and (report.probe.program, report.probe.os) == ("hil-uring-probe", "linux")
    assert report.diagnostics == ["uname Linux 6.1.0-28-amd64 x86_64"]
    assert report.heartbeats == {"depth_8": 1000}
    assert not report.ok  # depth_8 failed


def test_all_passing_run_is_ok() -> None:
    report = parse_text(WELL_FORMED.replace("not ok 3 depth_8 # read returned -5 at offset 4096", "ok 3 depth_8"))
    assert report.ok
    assert report.summary() == {"pass": 3, "fail": 0, "skip": 1, "error": 0}


def test_streaming_and_whole_text_agree() -> None:
    assert _streamed(_lines(WELL_FORMED)).finish().as_dict() == parse_text(WELL_FORMED).as_dict()


def test_finish_is_a_snapshot_and_can_be_called_while_streaming() -> None:
    lines = _lines(WELL_FORMED)
    parser = _streamed(lines[:7])
    partial = parser.finish()
    assert [case.status for case in partial.cases] == ["pass", "error", "error", "error"]
    for line in lines[7:]:
        parser.feed(line)
    assert parser.finish().as_dict() == parse_text(WELL_FORMED).as_dict()
    assert [case.status for case in partial.cases] == ["pass", "error", "error", "error"]


def test_as_dict_is_json_ready() -> None:
    data = json.loads(json.dumps(parse_text(WELL_FORMED).as_dict()))
    assert data["plan"] == 4 and data["ok"] is False
    assert data["cases"][0]["metrics"]["features"] == {"value": 16383.0, "unit": "flags", "raw": "0x3fff"}
    assert data["summary"]["fail"] == 1
    assert data["probe"] == {"program": "hil-uring-probe", "version": "1", "os": "linux"}


@pytest.mark.parametrize("cut_after", [5, 8, 12])
def test_truncated_output_turns_missing_cases_into_errors(cut_after: int) -> None:
    report = parse_text("\n".join(_lines(WELL_FORMED)[:cut_after]))
    assert len(report.cases) == 4
    missing = [case for case in report.cases if case.status == "error"]
    assert missing and all(case.reason == TRUNCATED_REASON for case in missing)
    assert [case.name for case in report.cases] == ["setup", "nop_batch", "depth_8", "timeout"]
    assert any(TRUNCATED_REASON in error for error in report.errors)
    assert not report.ok


def test_missing_case_without_case_list_gets_a_numbered_name() -> None:
    report = parse_text("KTAP version 1\n1..2\nok 1 setup\n")
    assert (report.cases[1].name, report.cases[1].status) == ("case_2", "error")


def test_missing_case_keeps_its_last_heartbeat() -> None:
    report = parse_text("KTAP version 1\n1..2\n# cases a b\nok 1 a\n# heartbeat b 77\n")
    assert report.cases[1].diagnostics == ["last heartbeat: 77"]


def test_abort_after_timeout_is_an_error_and_names_what_was_not_run() -> None:
    text = "KTAP version 1\n1..3\n# cases a b c\nok 1 a\nnot ok 2 b # timed out after 60 s\n# probe aborted\n"
    report = parse_text(text + "ok 3 c\n")  # nothing after the abort counts
    assert report.aborted and not report.ok
    assert [case.status for case in report.cases] == ["pass", "fail", "error"]
    assert report.cases[2].reason == ABORTED_REASON
    assert any("probe aborted during case 2 b" in error for error in report.errors)


def test_bail_out_is_an_abort() -> None:
    report = parse_text("KTAP version 1\n1..1\nBail out! no io_uring\n")
    assert report.aborted and report.cases[0].status == "error"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ok 1 setup\n1..1\n",
        "[    0.000000] Linux version 6.1.0\nhil# \n",
    ],
)
def test_missing_header_is_an_error_and_results_before_it_are_noise(text: str) -> None:
    report = parse_text(text)
    assert not report.ok
    assert report.cases == [] and report.plan is None
    assert any("no 'KTAP version 1' header" in error for error in report.errors)


def test_missing_plan_is_an_error() -> None:
    report = parse_text("KTAP version 1\nok 1 setup\n")
    assert [case.status for case in report.cases] == ["pass"]
    assert any("no plan line" in error for error in report.errors) and not report.ok


def test_interleaved_kernel_log_and_console_noise_are_ignored() -> None:
    noise = [
        "[   12.345678] nvme nvme0: pci function 0000:00:04.0",
        "hil-init: device /dev/nvme0n1 present",
        "random: crng init done",
        "\x1b[6n",
        "",
        "okay then",
        "ok",
    ]
    lines = _lines(WELL_FORMED)
    mixed = ["hil# /usr/bin/hil-uring-probe --device /dev/nvme0n1", *noise]
    for line in lines:
        mixed.append(line)
        mixed.append(noise[len(mixed) % len(noise)])
    assert _streamed(mixed).finish().as_dict() == parse_text(WELL_FORMED).as_dict()


def test_header_after_a_prompt_and_carriage_returns_and_escapes_are_tolerated() -> None:
    text = "hil# KTAP version 1\r\n1..1\r\n\x1b[0mok 1 setup\x1b[0m\r\n# metric setup.features=0x1 flags\r\n"
    report = parse_text(text)
    assert report.ok and report.cases[0].metrics["features"].value == 1.0


@pytest.mark.parametrize(
    ("line", "error_part"),
    [
        ("# metric setup.features=banana flags", "unparsable value 'banana'"),
        ("# metric setup.features= flags", "unparsable value ''"),
        ("# metric setup.features=nan flags", "unparsable value 'nan'"),
        ("# metric setup.features=inf flags", "unparsable value 'inf'"),
        ("# metric setup.features=1e999 flags", "unparsable value '1e999'"),
        ("# metric setup.features=1,000 flags", "unparsable value '1,000'"),
        ("# metric setup features", "malformed metric line"),
        ("# metric nodot=3 us", "malformed metric line"),
    ],
)
def test_bad_metric_is_an_error_not_a_crash(line: str, error_part: str) -> None:
    report = parse_text(f"KTAP version 1\n1..1\nok 1 setup\n{line}\n")
    assert report.cases[0].status == "pass"
    assert report.cases[0].metrics == {}
    assert any(error_part in error for error in report.errors), report.errors
    assert not report.ok


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("0", 0.0),
        ("42", 42.0),
        ("-3", -3.0),
        ("+7", 7.0),
        ("12.5", 12.5),
        (".5", 0.5),
        ("1.5e3", 1500.0),
        ("0x3fff", 16383.0),
        ("0XFF", 255.0),
        ("-0x10", -16.0),
    ],
)
def test_metric_values(raw: str, value: float) -> None:
    assert parse_metric_value(raw) == value


def test_metric_without_unit_has_an_empty_unit() -> None:
    report = parse_text("KTAP version 1\n1..1\nok 1 setup\n# metric setup.count=3\n")
    assert report.cases[0].metrics["count"] == Metric(3.0, "", "3") and report.ok


def test_metric_belongs_to_the_case_it_names_even_before_that_case_reports() -> None:
    text = "KTAP version 1\n1..2\nok 1 a\n# metric b.iops=5 ops/s\n# metric a.iops=9 ops/s\nok 2 b\n"
    report = parse_text(text)
    assert report.case("a").metrics["iops"].value == 9.0
    assert report.case("b").metrics["iops"].value == 5.0
    assert report.ok


def test_metric_for_a_case_that_never_reports_is_an_error() -> None:
    report = parse_text("KTAP version 1\n1..1\nok 1 a\n# metric ghost.iops=5 ops/s\n")
    assert any("'ghost'" in error for error in report.errors)


def test_repeated_metric_is_an_error_and_the_later_value_wins() -> None:
    report = parse_text("KTAP version 1\n1..1\nok 1 a\n# metric a.x=1 us\n# metric a.x=2 us\n")
    assert report.cases[0].metrics["x"].value == 2.0
    assert any("reported twice" in error for error in report.errors)


@pytest.mark.parametrize(
    ("results", "error_part"),
    [
        (["ok 1 a", "ok 3 c", "ok 2 b"], "out of sequence"),
        (["ok 1 a", "ok 1 a", "ok 2 b", "ok 3 c"], "reported twice"),
        (["ok 1 a", "ok 2 b", "ok 3 c", "ok 4 d"], "beyond the plan"),
        (["ok 1 a", "ok 2 x", "ok 3 c"], "'# cases' lists 'b'"),
        (["ok 1 a", "ok 2", "ok 3 c"], "case 2 has no name"),
    ],
)
def test_numbering_problems_are_errors(results: list[str], error_part: str) -> None:
    report = parse_text("\n".join(["KTAP version 1", "1..3", "# cases a b c", *results]))
    assert any(error_part in error for error in report.errors), report.errors
    assert not report.ok


def test_nameless_case_takes_its_name_from_the_case_list() -> None:
    report = parse_text("KTAP version 1\n1..1\n# cases setup\nok 1\n")
    assert report.cases[0].name == "setup"


def test_dash_before_the_name_is_accepted() -> None:
    report = parse_text("KTAP version 1\n1..1\nok 1 - setup\n")
    assert report.cases[0].name == "setup" and report.ok


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [
        ("ok 1 a", "pass", ""),
        ("ok 1 a # SKIP not on this guest", "skip", "not on this guest"),
        ("ok 1 a # skip", "skip", ""),
        ("not ok 1 a # SKIP no device", "skip", "no device"),
        ("not ok 1 a", "fail", ""),
        ("not ok 1 a #timed out after 60 s", "fail", "timed out after 60 s"),
    ],
)
def test_result_directives(line: str, status: str, reason: str) -> None:
    case = parse_text(f"KTAP version 1\n1..1\n{line}\n").cases[0]
    assert (case.status, case.reason) == (status, reason)


def test_garbage_inside_the_run_is_ignored() -> None:
    text = WELL_FORMED.replace("ok 2 nop_batch\n", "ok 2 nop_batch\n\x00\x07garbage ~~~\n%%%\nmetric x=1\n")
    assert parse_text(text).as_dict() == parse_text(WELL_FORMED).as_dict()


def test_second_header_ends_the_run() -> None:
    report = parse_text(WELL_FORMED + WELL_FORMED)
    assert len(report.cases) == 4
    assert any("second 'KTAP version' header" in error for error in report.errors)


def test_other_ktap_version_is_an_error() -> None:
    report = parse_text("KTAP version 2\n1..1\nok 1 a\n")
    assert any("KTAP version 2" in error for error in report.errors)


def test_diagnostics_follow_the_case_they_come_after_and_heartbeats_are_not_diagnostics() -> None:
    text = "KTAP version 1\n1..2\n# before\nok 1 a\n# about a\n# heartbeat b 5\nok 2 b\n# about b\n"
    report = parse_text(text)
    assert report.diagnostics == ["before"]
    assert report.cases[0].diagnostics == ["about a"]
    assert report.cases[1].diagnostics == ["about b"]


def test_plan_of_zero_is_an_empty_ok_run() -> None:
    report = parse_text("KTAP version 1\n1..0 # SKIP nothing to do\n")
    assert report.ok and report.cases == []


@pytest.mark.parametrize(
    "junk",
    [
        b"\xff\xfe KTAP version 1\n1..1\nok 1 \xc3\x28\n",
        "KTAP version 1\n1..99999999999999999999\n",
        "KTAP version 1\n1..2\nok 99999999999999999999 big\n",
        "KTAP version 1\n" + "# metric " + "a." * 5000 + "=1\n",
        "KTAP version 1\n1..1\n" + "ok 1 " + "x" * 100000 + "\n",
        "\n" * 1000,
        "KTAP version 99999999999999999999999\n",
        "KTAP version 1\n1..1\n# metric a.b=0x\n# metric .b=1\n# metric a.=1\n# heartbeat\n# cases\n# probe\n",
    ],
)
def test_never_raises(junk: str | bytes) -> None:
    parser = ProbeParser()
    parser.feed(junk)
    parser.feed(None)  # type: ignore[arg-type]
    parser.feed(12)  # type: ignore[arg-type]
    report = parser.finish()
    json.dumps(report.as_dict())
    assert isinstance(report.errors, list)


def test_huge_plan_does_not_hang_and_is_reported() -> None:
    report = parse_text("KTAP version 1\n1..99999999999999999999\nok 1 a\n")
    assert not report.ok


def test_real_linux_capture() -> None:
    report = parse_text(REAL_LINUX_CAPTURE)
    assert report.ok, report.errors
    assert len(report.cases) == 11 and {case.status for case in report.cases} == {"pass"}
    assert report.case("setup").metrics["features"].value == 0x1FFF
    assert report.case("out_of_order").metrics["out_of_order_completions"].value == 4
    depth_8 = report.case("depth_8").metrics
    assert (depth_8["lat_p99_us"].value, depth_8["lat_p99_us"].unit) == (872.1, "us")
    assert report.case("odirect_write_read").diagnostics == ["seed 0xd112a75e5f56a830, blocks at 1048576..5242880"]
    assert report.heartbeats == {"depth_1": 3799}


def test_real_linux_abort() -> None:
    report = parse_text(REAL_LINUX_ABORT)
    assert report.aborted and not report.ok
    assert [case.status for case in report.cases] == ["pass"] * 4 + ["fail"] + ["error"] * 4
    assert report.case("depth_8").reason == ABORTED_REASON
    assert report.case("depth_1").reason == "timed out after 2 s"
