#!/usr/bin/env bash
# Guest instructions per host-side stage on an emulated Pynq-Z2 userland (armhf, Cortex-A9).
#
#   bash benchmarks/arm/run.sh [--quick] [--rootfs DIR] [--out FILE] [--no-reference-blas]
#                              [--smoke] [--minimal] [--ref GIT-REV]
#
# 1. builds the Debian bookworm armhf rootfs (build_rootfs.sh; --quick reuses a complete one),
# 2. copies the working tree into it (tracked + untracked, not ignored) and installs it the way
#    the README tells a board user: `pip install /path/to/pynq-bnn` in the board's Python
#    environment (here the venv /opt/pynq-venv, created with --system-site-packages like
#    PYNQ 3.x's pynq-venv, so Debian's numpy and Pillow are used), as root in the chroot;
#    every armhf process (pip, gcc) runs under binfmt's qemu-arm-static with
#    QEMU_CPU=cortex-a9, so platform.machine() is "armv7l" as on the board,
# 3. compiles the TCG plugin insn_count.so with the host gcc and copies the host's dynamic
#    qemu-arm (the static one takes no -plugin) with its shared libraries into the rootfs
#    (/opt/qemu-host; run through the host's own ld.so, so chroot needs nothing from the host),
# 4. checks the plugin against insn_test.c (known loop counts, 1 and 2 threads),
# 5. runs stages.py under `qemu-arm -cpu cortex-a9 -plugin insn_count.so` inside the chroot,
#    pinned to 2 host CPUs (the board's two A9 cores), once with the default BLAS (OpenBLAS)
#    and once with the reference BLAS for the BLAS-bound stages,
# 6. writes benchmarks/results/arm_stages.json (report.py) and prints a table.
#
# --ref REV: install the committed tree of REV (git archive) instead of the working tree (the
#          default: tracked + untracked files as they are now, for testing uncommitted work).
# --minimal: the smaller rootfs recipe of build_rootfs.sh (reference BLAS only);
# --fast: the same, unpacked on the host without the emulated second stage (build_rootfs.sh).
# --smoke: only install + one classification under emulation (no plugin, no report); exits
#          non-zero if it fails. The CI smoke test (benchmarks/arm/ci_smoke.sh) uses it.
# Needs root. Time here: rootfs ~5.5 min the first time, then ~1.5 min per run (PERFORMANCE.md).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ROOTFS="${PYNQ_BNN_ARM_ROOTFS:-/var/tmp/pynq-bnn-armhf}"
OUT="$REPO/benchmarks/results/arm_stages.json"
QUICK=()
REFBLAS=1
SMOKE=0
MINIMAL=()
REF=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=(--quick) ;;
        --rootfs) ROOTFS="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --no-reference-blas) REFBLAS=0 ;;
        --smoke) SMOKE=1 ;;
        --minimal) MINIMAL=(--minimal) ;;
        --fast) MINIMAL=(--fast) ;;
        --ref) REF="$2"; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
export PYNQ_BNN_ARM_ROOTFS="$ROOTFS"
log() { echo "[arm/run $(date -u +%H:%M:%S)] $*"; }
T_START=$(date +%s)

bash "$HERE/build_rootfs.sh" "${QUICK[@]}" "${MINIMAL[@]}" --rootfs "$ROOTFS"
T_ROOTFS=$(date +%s)

mounts_down() {
    for m in dev/pts dev proc sys; do
        mountpoint -q "$ROOTFS/$m" 2>/dev/null && umount -l "$ROOTFS/$m" || true
    done
}
trap mounts_down EXIT
mountpoint -q "$ROOTFS/proc" || mount -t proc proc "$ROOTFS/proc"
mountpoint -q "$ROOTFS/sys" || mount -t sysfs sys "$ROOTFS/sys"
mountpoint -q "$ROOTFS/dev" || mount --bind /dev "$ROOTFS/dev"
mountpoint -q "$ROOTFS/dev/pts" || mount --bind /dev/pts "$ROOTFS/dev/pts"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"  # pip's build isolation fetches setuptools
# pip's build isolation downloads setuptools>=61 (pyproject.toml) from PyPI. Where HTTPS goes
# through a TLS-intercepting proxy (as on these build machines) the rootfs's Debian CA list
# is not enough: hand pip the host's bundle (PIP_CERT). On an open network it changes nothing.
PIP_CA=()
for ca in "${PIP_CERT:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$ca" ] && [ -f "$ca" ]; then
        cp "$ca" "$ROOTFS/etc/ssl/certs/pynq-bnn-host-ca.crt"
        PIP_CA=(PIP_CERT=/etc/ssl/certs/pynq-bnn-host-ca.crt)
        break
    fi
done

# Two host CPUs for everything in the chroot: the board's two A9 cores (the engine and
# FirstLayer size their thread pools from the affinity mask).
PIN=()
[ "$(nproc)" -ge 2 ] && PIN=(taskset -c 0,1)
# Every armhf process in the chroot (binfmt -> qemu-arm-static) models a Cortex-A9.
export QEMU_CPU=cortex-a9
in_chroot() { "${PIN[@]}" chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root \
    LC_ALL=C.UTF-8 QEMU_CPU=cortex-a9 "$@"; }

# ---- 2. the package, as a board user installs it
SRC=/home/xilinx/pynq-bnn
rm -rf "$ROOTFS$SRC"
mkdir -p "$ROOTFS$SRC"
if [ -n "$REF" ]; then
    log "copying $REF (git archive) to $ROOTFS$SRC"
    (cd "$REPO" && git archive --format=tar "$REF") | tar -xf - -C "$ROOTFS$SRC"
    COMMIT="$(cd "$REPO" && git rev-parse "$REF")"
    DIRTY=0
else
    log "copying the working tree to $ROOTFS$SRC"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$ROOTFS$SRC"
    COMMIT="$(cd "$REPO" && git rev-parse HEAD)"
    DIRTY="$(cd "$REPO" && git status --porcelain -- pynq_bnn setup.py pyproject.toml MANIFEST.in | wc -l)"
fi
mkdir -p "$ROOTFS/opt/bench"
log "pip install $SRC (in /opt/pynq-venv, emulated Cortex-A9)"
T0=$(date +%s)
in_chroot /opt/pynq-venv/bin/pip uninstall -y -q pynq-bnn >/dev/null 2>&1 || true
in_chroot "${PIP_CA[@]}" /opt/pynq-venv/bin/pip install -v --no-cache-dir "$SRC" > "$ROOTFS/opt/bench/pip_install.log" 2>&1 \
    || { tail -40 "$ROOTFS/opt/bench/pip_install.log"; echo "pip install failed" >&2; exit 1; }
T_INSTALL=$(( $(date +%s) - T0 ))
log "installed in ${T_INSTALL} s"
# the engine's compile line(s) as pip ran them
ENGINE_CC="$(grep -E '(arm-linux-gnueabihf-gcc|gcc).*bnn_engine\.c' "$ROOTFS/opt/bench/pip_install.log" \
    | grep -v '^ *running' | head -1 | sed 's/^ *//' || true)"

if [ "$SMOKE" = 1 ]; then
    log "smoke: one classification under emulation"
    T0=$(date +%s)
    in_chroot sh -c "cd /tmp && /opt/pynq-venv/bin/pynq-bnn classify --backend cpu --json \
        /opt/pynq-venv/lib/python3*/site-packages/pynq_bnn/samples/cat.png" > /tmp/pynq-bnn-smoke.json
    cat /tmp/pynq-bnn-smoke.json
    grep -q '"label": *"cat"' /tmp/pynq-bnn-smoke.json || { echo "smoke: cat.png not classified as cat" >&2; exit 1; }
    log "smoke ok: classify ${T0:+$(( $(date +%s) - T0 )) s}, total $(( $(date +%s) - T_START )) s"
    exit 0
fi

# ---- 3. plugin + the dynamic qemu-arm inside the rootfs
QH="$ROOTFS/opt/qemu-host"
rm -rf "$QH"; mkdir -p "$QH/lib"
gcc -O2 -Wall -Wextra -shared -fPIC -fvisibility=hidden -o "$QH/insn_count.so" "$HERE/insn_count.c"
cp /usr/bin/qemu-arm "$QH/qemu-arm"
ldd /usr/bin/qemu-arm | awk '/=>/ {print $3} /ld-linux/ {print $1}' | while read -r lib; do
    [ -f "$lib" ] && cp -L "$lib" "$QH/lib/"
done
LDSO="$(basename "$(ldd /usr/bin/qemu-arm | awk '/ld-linux/ {print $1}')")"
QEMU_VERSION="$(/usr/bin/qemu-arm --version | head -1)"
qemu_plugin() {  # qemu_plugin COUNTS_FILE [qemu options] -- guest command...
    local counts="$1"; shift
    in_chroot "/opt/qemu-host/lib/$LDSO" --library-path /opt/qemu-host/lib \
        /opt/qemu-host/qemu-arm -cpu cortex-a9 \
        -plugin "/opt/qemu-host/insn_count.so,out=$counts" "$@"
}

# ---- 4. plugin self-test: a guest program with known counts
log "plugin self-test (insn_test.c)"
cp "$HERE/insn_test.c" "$ROOTFS/opt/bench/"
in_chroot gcc -O2 -pthread -o /opt/bench/insn_test /opt/bench/insn_test.c
qemu_plugin /opt/bench/insn_test_counts.json /opt/bench/insn_test > "$ROOTFS/opt/bench/insn_test.json"

# ---- 5. the stages
cp "$HERE/stages.py" "$ROOTFS/opt/bench/"
RUNS=()
log "stages, default BLAS (OpenBLAS if installed)"
T0=$(date +%s)
qemu_plugin /opt/bench/counts_default.json /opt/pynq-venv/bin/python /opt/bench/stages.py \
    --out /opt/bench/stages_default.json --label "default libblas.so.3 alternative"
T_STAGES=$(( $(date +%s) - T0 ))
RUNS+=(--run default "$ROOTFS/opt/bench/stages_default.json" "$ROOTFS/opt/bench/counts_default.json")
REFDIR=/usr/lib/arm-linux-gnueabihf/blas
# (symlinks in the rootfs are absolute: resolve them inside the chroot)
BLAS_ALT="$(in_chroot readlink -f /usr/lib/arm-linux-gnueabihf/libblas.so.3)"
if [ "$REFBLAS" = 1 ] && [ -e "$ROOTFS$REFDIR/libblas.so.3" ] \
        && [ "$BLAS_ALT" != "$(in_chroot readlink -f $REFDIR/libblas.so.3)" ]; then
    log "stages, reference BLAS ($REFDIR)"
    qemu_plugin /opt/bench/counts_refblas.json -E LD_LIBRARY_PATH=$REFDIR \
        /opt/pynq-venv/bin/python /opt/bench/stages.py --out /opt/bench/stages_refblas.json \
        --label "reference BLAS (LD_LIBRARY_PATH=$REFDIR)" \
        --only "import_numpy,model_load,classify_one_array,layer1*,classify_array,classify_png32"
    RUNS+=(--run reference_blas "$ROOTFS/opt/bench/stages_refblas.json" "$ROOTFS/opt/bench/counts_refblas.json")
fi

# ---- 6. report
PKGV="$(in_chroot dpkg-query -W -f='${Package}=${Version} ' python3 python3-numpy python3-pil \
    libopenblas0-pthread libblas3 gcc 2>/dev/null || true)"
PIPV="$(in_chroot /opt/pynq-venv/bin/pip --version | awk '{print $2}')"
python3 - "$ROOTFS/opt/bench/meta.json" <<EOF
import json, sys, datetime
json.dump({
 "what": "guest instructions per host-side stage, Debian bookworm armhf under qemu-user "
         "(-cpu cortex-a9), counted by benchmarks/arm/insn_count.so; see docs/PERFORMANCE.md",
 "commit": "$COMMIT", "uncommitted_package_files": int("$DIRTY"),
 "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
 "qemu": "$QEMU_VERSION", "qemu_cpu": "cortex-a9", "host_cpus_pinned": "${PIN[*]:-none}",
 "rootfs": "$ROOTFS", "rootfs_marker": open("$ROOTFS/.pynq-bnn-rootfs").read().strip().splitlines(),
 "debian_packages": "$PKGV".split(), "pip": "$PIPV", "libblas_so_3_default": "$BLAS_ALT",
 "install": {"command": "pip install -v --no-cache-dir $SRC (in /opt/pynq-venv, venv --system-site-packages)",
             "seconds_emulated": $T_INSTALL, "engine_compile_line": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$ENGINE_CC")},
 "seconds": {"rootfs_step": $((T_ROOTFS - T_START)), "stages_default_run": $T_STAGES},
}, open(sys.argv[1], "w"), indent=1)
EOF
mkdir -p "$(dirname "$OUT")"
python3 "$HERE/report.py" --meta "$ROOTFS/opt/bench/meta.json" \
    --selftest "$ROOTFS/opt/bench/insn_test.json" "$ROOTFS/opt/bench/insn_test_counts.json" \
    "${RUNS[@]}" --out "$OUT" --markdown "$ROOTFS/opt/bench/arm_stages.md"
log "docs table: $ROOTFS/opt/bench/arm_stages.md"
log "wrote $OUT in $(( $(date +%s) - T_START )) s"
