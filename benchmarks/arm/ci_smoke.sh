#!/usr/bin/env bash
# Opt-in CI smoke test of the board install under armhf emulation:
#   a minimal Debian bookworm armhf rootfs (build_rootfs.sh --fast: debootstrap's first stage
#   downloads the packages, the host unpacks them, no emulated second stage; reused when its
#   marker matches), `pip install /path/to/pynq-bnn` in the board-like venv under an emulated
#   Cortex-A9 (the native engine built with the board's flags), then
#   `pynq-bnn classify --backend cpu --json cat.png`, which must answer "cat".
#
#   bash benchmarks/arm/ci_smoke.sh [--ref GIT-REV]      (root; Debian mirror + PyPI reachable)
#
# Time on the 2-core development VM (load ~4): 2.5 min from nothing (rootfs 71 s, install
# 74 s, classification 6 s), ~1.5 min when the rootfs is already there; the faithful
# --minimal rootfs (emulated dpkg) would take 6-10 min instead. Exit status: 0 ok, 1 failure.
# The rootfs lives in $PYNQ_BNN_ARM_CI_ROOTFS (default /var/tmp/pynq-bnn-armhf-ci), outside
# the repository.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ "$(id -u)" != 0 ]; then
    echo "ci_smoke.sh: needs root (debootstrap, chroot, binfmt_misc)" >&2
    exit 1
fi
START=$(date +%s)
bash "$HERE/run.sh" --smoke --fast --quick \
    --rootfs "${PYNQ_BNN_ARM_CI_ROOTFS:-/var/tmp/pynq-bnn-armhf-ci}" "$@"
echo "ci_smoke.sh: ok in $(( $(date +%s) - START )) s"
