#!/usr/bin/env bash
# The gate: get the branch's image (hil-image.sh), run the suite in parallel, write JUnit and HTML reports.
# Exit codes: 0 pass; 1 fail, crash or hang somewhere (a kernel regression); 3 infra left after the
# in-job retries (the runner or QEMU, not the kernel); 2 a usage mistake (suite, variables).
# Variables: see ci/gitlab-ci.yml and ci/README.md. HIL is the hil command (default: the bootstrap's venv).
# Under GitLab's `parallel: N` (CI_NODE_TOTAL > 1) this job runs part CI_NODE_INDEX of N of the suite into
# $HIL_REPORT_DIR/shard-K/; hil-merge.sh joins the parts into one report.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
default_hil="$here/../.venv/bin/hil"
[ -x "$default_hil" ] || default_hil=hil
read -ra hil <<< "${HIL:-$default_hil}"
export HIL="${hil[*]}"
report=${HIL_REPORT_DIR:-hil-report}
mkdir -p "$report"
out=$report
shard_args=()
if [ "${CI_NODE_TOTAL:-1}" -gt 1 ]; then
    out="$report/shard-${CI_NODE_INDEX:?CI_NODE_TOTAL is set but CI_NODE_INDEX is not}"
    shard_args=(--shard "$CI_NODE_INDEX/$CI_NODE_TOTAL")
    mkdir -p "$out"
fi

HIL_REPORT_DIR="$out" "$here/hil-image.sh" > "$out/image-args.txt"
mapfile -t image_args < "$out/image-args.txt"
guest_args=()
[ -z "${HIL_GUEST:-}" ] || guest_args=(--guest "$HIL_GUEST")
read -ra user_args <<< "${HIL_RUN_ARGS:-}"
jobs=${HIL_JOBS:-}
[ -n "$jobs" ] || jobs=$(nproc)

set +e
"${hil[@]}" run --suite "${HIL_SUITE:-gate}" --jobs "$jobs" --retry-infra "${HIL_RETRY_INFRA:-1}" \
    --report-dir "$out/runset" --junit "$out/junit.xml" --html "$out/html" "${shard_args[@]}" \
    "${image_args[@]}" "${guest_args[@]}" "${user_args[@]}"
code=$?
set -e

case $code in
    0) echo "hil-gate: pass" ;;
    1) echo "hil-gate: FAILED: a run failed, crashed or hung; see $out/html/index.html" ;;
    3) echo "hil-gate: INFRA: runs kept failing for host reasons after retries; not a kernel verdict" ;;
    *) echo "hil-gate: hil exited with $code (usage or internal error)" ;;
esac
exit $code
