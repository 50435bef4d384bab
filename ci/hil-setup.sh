#!/usr/bin/env bash
# Prepare a CI runner for hil (Debian or Ubuntu, as root): QEMU and the tools hil needs, a venv with hil from
# this checkout, and the reference guest (cached in HIL_CACHE_DIR). A second run only checks.
set -euo pipefail
hil_home=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HIL_INSTALL=${HIL_INSTALL:-runtime} "$hil_home/scripts/bootstrap"  # hil alone: no dev tools in a CI job
"$hil_home/.venv/bin/hil" doctor || true  # the log shows the accelerator (KVM or TCG) and the caches
