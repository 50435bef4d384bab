#!/usr/bin/env bash
# Get the image for the branch under test and print the `hil run` options that use it, one per line.
#   HIL_IMAGE=IMG                         a ready disk image: --image IMG
#   HIL_KERNEL=FILE + HIL_PACKAGES=URL    fast path for a kernel-only branch: assemble a disk from the
#                                         package repository with this kernel (well under a second per run)
#   HIL_REDOX=CHECKOUT                    full build with the Redox build system, kernel from HIL_KERNEL_SRC (.)
#   none of them                          nothing: every scenario boots its own default guest
# Exit codes: 0 done, 2 a variable is wrong, 3 the image could not be made (infra).
set -euo pipefail
read -ra hil <<< "${HIL:-hil}"
report=${HIL_REPORT_DIR:-hil-report}
say() { echo "hil-image: $*" >&2; }

if [ -n "${HIL_IMAGE:-}" ]; then
    [ -f "$HIL_IMAGE" ] || { say "HIL_IMAGE=$HIL_IMAGE does not exist"; exit 2; }
    say "using the image $HIL_IMAGE"
    printf '%s\n' --image "$HIL_IMAGE"
elif [ -n "${HIL_KERNEL:-}" ]; then
    [ -f "$HIL_KERNEL" ] || { say "HIL_KERNEL=$HIL_KERNEL does not exist (did the kernel job run?)"; exit 2; }
    [ -n "${HIL_PACKAGES:-}" ] || { say "HIL_KERNEL needs HIL_PACKAGES (a package folder or repository URL)"; exit 2; }
    mkdir -p "$report/image"
    say "assembling a Redox image with $HIL_KERNEL from $HIL_PACKAGES"
    # One image up front: it fails early and clearly if the packages are unreachable, and reviewers can
    # download it; each run then assembles its own copy from the same inputs.
    "${hil[@]}" image assemble --packages "$HIL_PACKAGES" --kernel "$HIL_KERNEL" --out "$report/image/redox.img" >&2 \
        || { say "assembling the image failed"; exit 3; }
    printf '%s\n' --packages "$HIL_PACKAGES" --kernel "$HIL_KERNEL"
elif [ -n "${HIL_REDOX:-}" ]; then
    [ -d "$HIL_REDOX" ] || { say "HIL_REDOX=$HIL_REDOX is not a folder"; exit 2; }
    say "building a Redox image in $HIL_REDOX with the kernel from ${HIL_KERNEL_SRC:-.}"
    "${hil[@]}" image build --redox "$HIL_REDOX" --kernel-src "${HIL_KERNEL_SRC:-.}" >&2 \
        || { say "the Redox build failed"; exit 3; }
    printf '%s\n' --image "$HIL_REDOX/build/x86_64/hil/harddrive.img"
else
    say "no HIL_IMAGE, HIL_KERNEL or HIL_REDOX: the scenarios boot their own default guests"
fi
