#!/usr/bin/env bash
# Opt-in CI smoke test of the board install under armhf emulation:
#   a minimal Debian bookworm armhf rootfs (build_rootfs.sh --minimal, reused when its marker
#   matches), `pip install /path/to/pynq-bnn` in the board-like venv (the native engine built
#   with the board's flags), then `pynq-bnn classify --backend cpu --json cat.png`, which must
#   answer "cat".
#
#   bash benchmarks/arm/ci_smoke.sh [--ref GIT-REV]      (root; Debian mirror + PyPI reachable)
#
# Time on the 2-core development VM: ~7 min from nothing (rootfs ~5.5 min, install ~1 min,
# classification ~5 s), ~1 min when the rootfs is already there. Exit status: 0 ok, 1 failure.
# The rootfs lives in $PYNQ_BNN_ARM_CI_ROOTFS (default /var/tmp/pynq-bnn-armhf-ci), outside
# the repository.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ "$(id -u)" != 0 ]; then
    echo "ci_smoke.sh: needs root (debootstrap, chroot, binfmt_misc)" >&2
    exit 1
fi
START=$(date +%s)
bash "$HERE/run.sh" --smoke --minimal --quick \
    --rootfs "${PYNQ_BNN_ARM_CI_ROOTFS:-/var/tmp/pynq-bnn-armhf-ci}" "$@"
echo "ci_smoke.sh: ok in $(( $(date +%s) - START )) s"
