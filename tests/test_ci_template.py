"""The GitLab CI template in ci/: it parses, its scripts exist and are sound, and the gate script really runs
a (tiny) suite against the reference guest, producing JUnit that validates and an HTML report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import xmlschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "ci"
TEMPLATE = CI / "gitlab-ci.yml"
SCHEMA = Path(__file__).parent / "data" / "junit.xsd"
INFRA_REASONS = {"runner_system_failure", "stuck_or_timeout_failure", "scheduler_failure", "api_failure",
                 "data_integrity_failure", "runner_unsupported", "unmet_prerequisites"}  # fmt: skip


def template() -> dict:
    return yaml.safe_load(TEMPLATE.read_text())


def job_scripts(job: dict) -> list[str]:
    return [line for key in ("before_script", "script") for line in job.get(key, [])]


def test_the_template_parses_and_publishes_junit_and_html() -> None:
    config = template()
    gate = config["hil-gate"]
    report_dir = config["variables"]["HIL_REPORT_DIR"]
    assert gate["artifacts"]["when"] == "always"
    assert gate["artifacts"]["reports"]["junit"] == f"{report_dir}/junit.xml"
    assert f"{report_dir}/" in gate["artifacts"]["paths"]
    assert gate["needs"] == ["hil-kernel"] and gate["stage"] in config["stages"]
    assert "--retry-infra" in (CI / "hil-gate.sh").read_text()


def test_gitlab_retries_only_infrastructure_failures() -> None:
    config = template()
    for name in ("hil-kernel", "hil-gate"):
        retry = {}
        for parent in config[name].get("extends", []):
            retry = config[parent].get("retry", retry)
        retry = config[name].get("retry", retry)
        reasons = set(retry["when"])
        assert reasons and reasons <= INFRA_REASONS, reasons  # never script_failure or always


def test_every_script_the_template_calls_exists_and_is_sound() -> None:
    lines = [line for job in template().values() if isinstance(job, dict) for line in job_scripts(job)]
    called = sorted({match for line in lines for match in re.findall(r"\$HIL_HOME/(ci/[\w.-]+\.sh)", line)})
    assert called == ["ci/hil-gate.sh", "ci/hil-setup.sh"]
    scripts = [ROOT / path for path in called] + [CI / "hil-image.sh"]  # hil-gate.sh calls hil-image.sh
    assert "hil-image.sh" in (CI / "hil-gate.sh").read_text()
    for script in scripts:
        assert script.is_file() and os.access(script, os.X_OK), script
        subprocess.run(["bash", "-n", str(script)], check=True)
        assert script.read_text().startswith("#!/usr/bin/env bash\n")


def cli_has_run_sets() -> bool:
    done = subprocess.run([sys.executable, "-m", "hil.cli", "run", "--help"], capture_output=True, text=True)
    return "--suite" in done.stdout


@pytest.mark.qemu
@pytest.mark.skipif(not cli_has_run_sets(), reason="`hil run --suite` is not wired into hil/cli.py yet")
def test_the_gate_script_runs_a_tiny_suite(tmp_path: Path, reference_image) -> None:
    suite = tmp_path / "tiny.toml"
    suite.write_text('name = "tiny"\n[[runs]]\nscenario = "boot"\nsmp = [1]\n')
    report = tmp_path / "hil-report"
    env = {**os.environ, "HIL": f"{sys.executable} -m hil.cli", "HIL_SUITE": str(suite), "HIL_JOBS": "1",
           "HIL_REPORT_DIR": str(report), "HIL_KERNEL": "", "HIL_IMAGE": "", "HIL_REDOX": "",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    done = subprocess.run([str(CI / "hil-gate.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hil-gate: pass" in done.stdout
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(report / "junit.xml"))
    assert 'name="boot[smp=1,run=1]"' in (report / "junit.xml").read_text()
    page = (report / "html" / "index.html").read_text()
    assert "boot[smp=1,run=1]" in page and "../runset/runs/boot-smp1-r1/try1/serial.log" in page
    assert (report / "runset" / "runset.json").is_file()
