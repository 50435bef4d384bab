"""The GitLab CI template in ci/: it parses, its scripts exist and are sound, and the gate script really runs
a (tiny) suite against the reference guest, producing JUnit that validates and an HTML report."""

from __future__ import annotations

import os
import re
import shutil
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
    gate, report = config["hil-gate"], config["hil-report"]
    report_dir = config["variables"]["HIL_REPORT_DIR"]
    assert gate["artifacts"]["when"] == "always" and f"{report_dir}/" in gate["artifacts"]["paths"]
    assert gate["needs"] == ["hil-kernel"] and gate["stage"] in config["stages"]
    assert isinstance(gate["parallel"], int) and gate["parallel"] >= 2
    assert "reports" not in gate["artifacts"]  # the parts' JUnit would count every run twice in the MR
    # The report job joins the parts even when one failed, and publishes the one JUnit and HTML report.
    assert report["when"] == "always" and report["needs"] == [{"job": "hil-gate", "artifacts": True}]
    assert report["artifacts"]["reports"]["junit"] == f"{report_dir}/junit.xml"
    assert f"{report_dir}/html/" in report["artifacts"]["paths"] and report["artifacts"]["when"] == "always"
    # The parts split by a durations table only the report job writes, so every part reads the same one.
    policies = {c["key"]: c.get("policy", "pull-push") for c in gate["cache"]}
    assert policies["hil-durations"] == "pull"
    assert [c.get("policy") for c in report["cache"] if c["key"] == "hil-durations"] == ["pull-push"]
    stages = config["stages"]
    assert stages.index(report["stage"]) > stages.index(gate["stage"])
    assert "--retry-infra" in (CI / "hil-gate.sh").read_text()


def test_the_merge_request_links_the_html_report_and_logs_are_wide() -> None:
    config = template()
    report_dir = config["variables"]["HIL_REPORT_DIR"]
    url = config["hil-report"]["environment"]["url"]
    assert url == "$CI_JOB_URL/artifacts/file/$HIL_REPORT_DIR/html/index.html" and report_dir
    assert int(config["variables"]["COLUMNS"]) > 80  # rich lays tables out for COLUMNS in a log
    setup = (CI / "hil-setup.sh").read_text()
    assert "HIL_INSTALL=${HIL_INSTALL:-runtime}" in setup  # no dev tools, no editable install in CI


def test_gitlab_retries_only_infrastructure_failures() -> None:
    config = template()
    for name in ("hil-kernel", "hil-gate", "hil-report"):
        retry = {}
        for parent in config[name].get("extends", []):
            retry = config[parent].get("retry", retry)
        retry = config[name].get("retry", retry)
        reasons = set(retry["when"])
        assert reasons and reasons <= INFRA_REASONS, reasons  # never script_failure or always


def test_every_script_the_template_calls_exists_and_is_sound() -> None:
    lines = [line for job in template().values() if isinstance(job, dict) for line in job_scripts(job)]
    called = sorted({match for line in lines for match in re.findall(r"\$HIL_HOME/(ci/[\w.-]+\.sh)", line)})
    assert called == ["ci/hil-gate.sh", "ci/hil-merge.sh", "ci/hil-setup.sh"]
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


def _gate_env(tmp_path: Path, suite: Path, report: Path, **more: str) -> dict[str, str]:
    return {**os.environ, "HIL": f"{sys.executable} -m hil.cli", "HIL_SUITE": str(suite), "HIL_JOBS": "1",
            "HIL_REPORT_DIR": str(report), "HIL_KERNEL": "", "HIL_IMAGE": "", "HIL_REDOX": "",
            "PYTHONPATH": str(ROOT), **more}  # fmt: skip


def _tiny_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "tiny.toml"
    suite.write_text('name = "tiny"\n[[runs]]\nscenario = "boot"\nsmp = [1, 2]\n')
    return suite


@pytest.mark.qemu
def test_the_gate_in_two_parallel_parts_merges_into_one_report(tmp_path: Path, reference_image) -> None:
    """hil-gate.sh as GitLab's `parallel: 2` runs it (CI_NODE_INDEX/CI_NODE_TOTAL), then hil-merge.sh."""
    suite, report = _tiny_suite(tmp_path), tmp_path / "hil-report"
    for index in ("1", "2"):
        env = _gate_env(tmp_path, suite, report, CI_NODE_INDEX=index, CI_NODE_TOTAL="2")
        done = subprocess.run([str(CI / "hil-gate.sh")], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0 and f"(shard {index}/2 of 2 runs" in done.stdout, done.stdout + done.stderr
        assert (report / f"shard-{index}" / "runset" / "runset.json").is_file()
    merged = subprocess.run([str(CI / "hil-merge.sh")], env=_gate_env(tmp_path, suite, report),
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert merged.returncode == 0 and "hil-merge: pass" in merged.stdout, merged.stdout + merged.stderr
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(report / "junit.xml"))
    junit = (report / "junit.xml").read_text()
    assert 'name="boot[smp=1,run=1]"' in junit and 'name="boot[smp=2,run=1]"' in junit
    page = (report / "html" / "index.html").read_text()
    assert "../shard-1/runset/runs/" in page and "../shard-2/runset/runs/" in page
    # Without part 2 (its job never uploaded), the report job must not be green.
    shutil.rmtree(report / "shard-2")
    half = subprocess.run([str(CI / "hil-merge.sh")], env=_gate_env(tmp_path, suite, report),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert half.returncode == 3 and "never run in any shard" in half.stdout, half.stdout


def _gitlab_ci_local() -> str | None:
    """The local GitLab CI runner (npm: gitlab-ci-local; 4.64.1 runs on Node 20), if it runs here."""
    tool = shutil.which("gitlab-ci-local")
    if not tool or not shutil.which("rsync"):  # it copies the project with rsync
        return None
    done = subprocess.run([tool, "--version"], capture_output=True, text=True)
    return tool if done.returncode == 0 else None


@pytest.mark.qemu
@pytest.mark.skipif(_gitlab_ci_local() is None,
                    reason="gitlab-ci-local (npm install -g gitlab-ci-local@4.64.1) and rsync are not both here")
def test_the_template_runs_under_a_local_gitlab_runner(tmp_path: Path, reference_image) -> None:
    """The template's own jobs, hil-gate (parallel: 2) then hil-report, with gitlab-ci-local's shell executor
    and artifact isolation: what GitLab would run, minus the kernel build (HIL_KERNEL empty)."""
    project = tmp_path / "kernel"
    project.mkdir()
    shutil.copy(TEMPLATE, project / ".gitlab-ci.yml")
    suite = _tiny_suite(project)
    for argv in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *argv], cwd=project, check=True)
    variables = {"HIL_HOME": str(ROOT), "HIL_KERNEL": "", "HIL_SUITE": str(suite), "HIL_JOBS": "1",
                 "HIL_CACHE_DIR": os.environ.get("HIL_CACHE_DIR", str(Path.home() / ".cache" / "hil")),
                 "HIL_RETRY_INFRA": "0", "CI_PIPELINE_SOURCE": "merge_request_event"}  # fmt: skip
    argv = [str(_gitlab_ci_local()), "--force-shell-executor", "--shell-isolation", "--concurrency", "1",
            "--ignore-predefined-vars", "CI_PIPELINE_SOURCE"]  # fmt: skip
    for name, value in variables.items():
        argv += ["--variable", f"{name}={value}"]
    done = subprocess.run([*argv, "hil-gate", "hil-report"], cwd=project, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert re.search(r"PASS\s+hil-gate: \[1/2\]", log) and re.search(r"PASS\s+hil-gate: \[2/2\]", log), log[-2000:]
    assert "hil-merge: 2 part(s)" in log and "hil-merge: pass" in log
    merged = project / "hil-report" / "merged" / "runset.json"
    assert '"verdict": "pass"' in merged.read_text()
    assert 'name="boot[smp=2,run=1]"' in (project / "hil-report" / "junit.xml").read_text()

