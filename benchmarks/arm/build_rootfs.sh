#!/usr/bin/env bash
# Build (or, with --quick, reuse) a Debian bookworm armhf rootfs that stands in for a Pynq-Z2's
# ARM userland: Python 3 + pip + venv + headers + gcc, numpy and Pillow from Debian.
#
#   bash benchmarks/arm/build_rootfs.sh [--quick] [--rootfs DIR] [--minimal]
#
#   --quick     reuse DIR if its marker file says a complete build of this recipe is there
#   --rootfs    where to build (default $PYNQ_BNN_ARM_ROOTFS, else /var/tmp/pynq-bnn-armhf);
#               outside the repository: the tree is ~600 MB
#   --minimal   only what install + one classification need (no OpenBLAS, pip, headers or
#               CA certificates); for the smoke test
#   --fast      --minimal without debootstrap's emulated second stage: stage 1 downloads every
#               package (--include), the host unpacks them (dpkg-deb -x, natively), then only
#               ldconfig, the BLAS alternatives, passwd/group and the venv are done by hand. No
#               maintainer scripts run and there is no dpkg database: good enough for
#               `pip install` + a classification (the CI smoke test), not a faithful system
#
# Needs root (debootstrap, chroot, mount) and the Debian mirror. Installs its own host tools:
# debootstrap, qemu-user-static (binfmt_misc runs armhf binaries in the chroot), qemu-user (the
# dynamic qemu-arm that accepts -plugin; run.sh copies it into the rootfs), binfmt-support.
#
# numpy and Pillow come from Debian (python3-numpy 1.24.2, python3-pil 9.4.0), not pip: PyPI has
# no armv7l wheels for either, so pip would compile numpy from source under emulation (hours),
# and a PYNQ board image also ships them preinstalled rather than built by the user. The board's
# pip environment is mimicked by a venv created with --system-site-packages (PYNQ 3.x's
# /usr/local/share/pynq-venv is one), at /opt/pynq-venv in the rootfs; run.sh installs
# pynq-bnn there with plain `pip install /path/to/pynq-bnn`, as the README says.
#
# BLAS: Debian's python3-numpy uses whatever provides libblas.so.3. The full build installs
# libopenblas0-pthread (an ARMV6-class build on armhf: no NEON kernels) which then wins the
# alternative; the reference BLAS (libblas3) stays installed, so stages can be measured with
# either (run.sh: LD_LIBRARY_PATH=/usr/lib/arm-linux-gnueabihf/blas selects the reference).
set -euo pipefail

ROOTFS="${PYNQ_BNN_ARM_ROOTFS:-/var/tmp/pynq-bnn-armhf}"
QUICK=0
MINIMAL=0
FAST=0
MIRROR="${PYNQ_BNN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rootfs) ROOTFS="$2"; shift ;;
        --rootfs=*) ROOTFS="${1#*=}" ;;
        --minimal) MINIMAL=1 ;;
        --fast) MINIMAL=1; FAST=1 ;;
        -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$MINIMAL" = 1 ]; then
    # what `pip install` + one classification need: the venv (pip comes from python3-venv's
    # wheel), a C compiler for the native engine, numpy (reference BLAS) and Pillow
    PACKAGES="python3 python3-venv gcc libc6-dev python3-numpy python3-pil libblas3"
else
    PACKAGES="python3 python3-pip python3-venv python3-dev gcc libc6-dev python3-numpy \
python3-pil ca-certificates libblas3 libopenblas0-pthread"
fi
# The marker records the recipe; --quick reuses the tree only if it matches.
RECIPE="suite=$SUITE arch=armhf venv=/opt/pynq-venv packages=$(echo $PACKAGES)"
[ "$FAST" = 1 ] && RECIPE="$RECIPE fast-unpacked"
MARKER="$ROOTFS/.pynq-bnn-rootfs"

log() { echo "[build_rootfs $(date -u +%H:%M:%S)] $*"; }

if [ "$QUICK" = 1 ] && [ -f "$MARKER" ] && grep -qxF "recipe: $RECIPE" "$MARKER"; then
    log "reusing $ROOTFS ($(grep '^built' "$MARKER"))"
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "build_rootfs.sh must run as root (debootstrap, chroot)" >&2; exit 1; }

START=$(date +%s)
need_tools=0
for t in debootstrap qemu-arm-static qemu-arm update-binfmts; do
    command -v "$t" >/dev/null || need_tools=1
done
if [ "$need_tools" = 1 ]; then
    log "installing host tools"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        debootstrap qemu-user-static qemu-user binfmt-support
fi

# binfmt_misc: armhf binaries in the chroot run through qemu-arm-static (flag F: the kernel
# opens the interpreter at registration, so it need not exist inside the chroot).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-arm ]; then
    update-binfmts --enable qemu-arm || true
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-arm ] || { echo "binfmt_misc has no qemu-arm entry" >&2; exit 1; }

mounts_down() {
    for m in dev/pts dev proc sys; do
        mountpoint -q "$ROOTFS/$m" 2>/dev/null && umount -l "$ROOTFS/$m" || true
    done
}
trap mounts_down EXIT

if [ -d "$ROOTFS" ]; then
    mounts_down
    log "removing the old tree at $ROOTFS"
    rm -rf --one-file-system "$ROOTFS"
fi
mkdir -p "$ROOTFS"

if [ "$FAST" = 1 ]; then
    log "debootstrap stage 1 with every package downloaded ($SUITE armhf minbase, $MIRROR)"
    debootstrap --arch=armhf --variant=minbase --foreign --include="$(echo $PACKAGES | tr ' ' ,)" \
        "$SUITE" "$ROOTFS" "$MIRROR"
    T1=$(date +%s)
    log "unpacking $(ls "$ROOTFS"/var/cache/apt/archives/*.deb | wc -l) packages on the host (dpkg-deb -x)"
    for deb in "$ROOTFS"/var/cache/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$ROOTFS"
    done
    rm -f "$ROOTFS"/var/cache/apt/archives/*.deb
    cp /usr/bin/qemu-arm-static "$ROOTFS/usr/bin/"
    # what maintainer scripts would have done, as far as Python + gcc need it
    [ -f "$ROOTFS/etc/passwd" ] || cp "$ROOTFS/usr/share/base-passwd/passwd.master" "$ROOTFS/etc/passwd"
    [ -f "$ROOTFS/etc/group" ] || cp "$ROOTFS/usr/share/base-passwd/group.master" "$ROOTFS/etc/group"
    ML=/usr/lib/arm-linux-gnueabihf
    ln -sf "$ML/blas/libblas.so.3" "$ROOTFS$ML/libblas.so.3"
    if [ -e "$ROOTFS$ML/lapack/liblapack.so.3" ]; then
        ln -sf "$ML/lapack/liblapack.so.3" "$ROOTFS$ML/liblapack.so.3"
    fi
    chroot "$ROOTFS" /sbin/ldconfig
    T2=$(date +%s)
    log "board-like pip environment: python3 -m venv --system-site-packages /opt/pynq-venv"
    chroot "$ROOTFS" /usr/bin/env LC_ALL=C /usr/bin/python3 -m venv --system-site-packages /opt/pynq-venv
    chroot "$ROOTFS" /opt/pynq-venv/bin/python -c "import numpy, PIL; print('numpy', numpy.__version__, 'Pillow', PIL.__version__)"
    END=$(date +%s)
    printf 'recipe: %s\nbuilt: %s in %s s (stage 1 + downloads %s s, unpack + fix-ups %s s, venv %s s)\n' \
        "$RECIPE" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" $((END - START)) $((T1 - START)) $((T2 - T1)) \
        $((END - T2)) > "$MARKER"
    log "done: $ROOTFS in $((END - START)) s"
    cat "$MARKER"
    exit 0
fi

log "debootstrap stage 1 ($SUITE armhf minbase, $MIRROR)"
debootstrap --arch=armhf --variant=minbase --foreign "$SUITE" "$ROOTFS" "$MIRROR"
cp /usr/bin/qemu-arm-static "$ROOTFS/usr/bin/"
T1=$(date +%s)
log "debootstrap stage 2 (armhf, emulated)"
chroot "$ROOTFS" /debootstrap/debootstrap --second-stage
T2=$(date +%s)

mount -t proc proc "$ROOTFS/proc"
mount -t sysfs sys "$ROOTFS/sys"
mount --bind /dev "$ROOTFS/dev"
mount --bind /dev/pts "$ROOTFS/dev/pts"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# no fsync per unpacked file: a throw-away tree, and dpkg under emulation is the slow part
echo force-unsafe-io > "$ROOTFS/etc/dpkg/dpkg.cfg.d/pynq-bnn-unsafe-io"
echo "deb $MIRROR $SUITE main" > "$ROOTFS/etc/apt/sources.list"

log "apt-get install (emulated): $PACKAGES"
chroot "$ROOTFS" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
    sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $PACKAGES && apt-get clean"
T3=$(date +%s)

log "board-like pip environment: python3 -m venv --system-site-packages /opt/pynq-venv"
chroot "$ROOTFS" /usr/bin/python3 -m venv --system-site-packages /opt/pynq-venv
chroot "$ROOTFS" /opt/pynq-venv/bin/python -c "import numpy, PIL; print('numpy', numpy.__version__, 'Pillow', PIL.__version__)"
END=$(date +%s)

cat > "$MARKER" <<EOF
recipe: $RECIPE
built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((END - START)) s (stage 1 $((T1 - START)) s, stage 2 $((T2 - T1)) s, packages $((T3 - T2)) s, venv $((END - T3)) s)
EOF
log "done: $ROOTFS in $((END - START)) s"
cat "$MARKER"
