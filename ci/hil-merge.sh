#!/usr/bin/env bash
# The report job: join the gate's shards ($HIL_REPORT_DIR/shard-K/runset from `parallel: N` jobs, or the one
# $HIL_REPORT_DIR/runset of an unsharded gate) into one runset.json, one JUnit file and one HTML report,
# with every run's artifacts linked where its shard left them. Exits with the merged verdict's code (0 pass,
# 1 fail/crash/hang, 3 infra: also when a shard is missing or the shards split the suite differently).
# HIL is the hil command; without one, hil is installed from this checkout into a venv (no QEMU needed).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
report=${HIL_REPORT_DIR:-hil-report}

if [ -z "${HIL:-}" ]; then
    if [ -x "$here/../.venv/bin/hil" ]; then
        HIL="$here/../.venv/bin/hil"
    else  # a fresh report job: reports need hil's Python side only
        venv="$here/../.venv-report"
        if [ ! -x "$venv/bin/hil" ]; then
            python3 -m venv "$venv" 2>/dev/null || {
                apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"; }
            "$venv/bin/pip" install -q "$here/.."
        fi
        HIL="$venv/bin/hil"
    fi
fi
read -ra hil <<< "$HIL"

shopt -s nullglob
parts=("$report"/shard-*/runset)
shopt -u nullglob
[ ${#parts[@]} -gt 0 ] || parts=("$report/runset")
echo "hil-merge: ${#parts[@]} part(s): ${parts[*]}"

set +e
"${hil[@]}" report merge "${parts[@]}" --out "$report/merged" --junit "$report/junit.xml" --html "$report/html"
code=$?
set -e
if [ -n "${CI_JOB_URL:-}" ]; then  # the report itself, one click from the job log
    echo "hil-merge: report: $CI_JOB_URL/artifacts/file/$report/html/index.html"
fi
case $code in
    0) echo "hil-merge: pass" ;;
    1) echo "hil-merge: FAILED: a run failed, crashed or hung; see $report/html/index.html" ;;
    3) echo "hil-merge: INFRA: host problems, or shards missing or not agreeing; not a kernel verdict" ;;
    *) echo "hil-merge: hil exited with $code" ;;
esac
exit $code
