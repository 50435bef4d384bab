from pathlib import Path

import pytest

from hil.errors import UsageError
from hil.scenario import builtin_names, load_scenario, parse_scenario


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_builtin_boot_loads() -> None:
    assert "boot" in builtin_names()
    scenario = load_scenario("boot")
    assert scenario.guest == "reference" and scenario.steps


def test_unknown_key_names_file_key_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\n[machine]\ncpus = 2\n')
    with pytest.raises(UsageError) as caught:
        parse_scenario(path)
    message = str(caught.value)
    assert str(path) in message and "machine.cpus" in message and "smp" in message


def test_wrong_type_is_explained(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"steps\[0\]\.timeout.*is .soon. \(text\). Fix: give a number"):
        parse_scenario(write(tmp_path, '[[steps]]\nrun = "true"\ntimeout = "soon"\n'))


def test_step_needs_a_kind(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"steps\[0\].*exactly one step kind"):
        parse_scenario(write(tmp_path, '[[steps]]\nname = "nothing"\n'))


def test_bad_toml_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not valid TOML"):
        parse_scenario(write(tmp_path, "name = \n"))


def test_unknown_scenario_lists_known_ones() -> None:
    with pytest.raises(UsageError, match="boot"):
        load_scenario("no-such-scenario")


def test_smp_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least 1"):
        parse_scenario(write(tmp_path, "[machine]\nsmp = 0\n"))


def test_builtin_scenarios_all_load() -> None:
    for name in builtin_names():
        assert load_scenario(name).steps, name


def test_device_mistakes_name_the_device_key(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"devices\[0\]\.kind.*use one of nvme"):
        parse_scenario(write(tmp_path, '[[devices]]\nkind = "floppy"\nid = "f0"\n'))
    with pytest.raises(UsageError, match=r"devices\[0\]\.controller.*not an xhci device"):
        parse_scenario(write(tmp_path, '[[devices]]\nkind = "usb-storage"\nid = "u0"\ncontroller = "x"\n'))
    with pytest.raises(UsageError, match=r"devices\[0\]\.forwards.*tcp:PORT"):
        parse_scenario(write(tmp_path, '[[devices]]\nkind = "e1000"\nid = "n0"\nforwards = ["tcp:99999"]\n'))


def test_steps_must_name_declared_hotpluggable_devices(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"steps\[0\]\.hotplug.*unknown device 'nvme9'"):
        parse_scenario(write(tmp_path, '[[steps]]\nhotplug = "nvme9"\n'))
    text = '[[devices]]\nkind = "xhci"\nid = "x0"\n[[steps]]\nunplug = "x0"\n'
    with pytest.raises(UsageError, match=r"cannot be .un.plugged"):
        parse_scenario(write(tmp_path, text))


def test_host_step_needs_its_mode_keys(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"steps\[0\]\.guest_port.*missing"):
        parse_scenario(write(tmp_path, '[[steps]]\nhost = "send"\n'))
