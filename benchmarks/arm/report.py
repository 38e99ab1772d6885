"""Join stages.py's region list with insn_count.so's marker snapshots into one JSON report.

Host-side (plain Python 3, no numpy), called by run.sh:

    python3 report.py --run NAME STAGES.json COUNTS.json [--run ...]
                      --selftest TEST.json COUNTS.json
                      --meta META.json --out benchmarks/results/arm_stages.json

Per region: guest instructions = total at the end marker - total at the begin marker (all
threads), per thread (vCPU) the same difference; per image = / n_images; estimated Cortex-A9
time at 650 MHz for 1.0 and 0.6 instructions per cycle.
"""
import argparse
import json
import sys

CLOCK_HZ = 650e6
IPC_HIGH, IPC_LOW = 1.0, 0.6


def pairs(counts):
    """{region id: (begin event, end event)} (the last pair of each id)."""
    begin, out = {}, {}
    for e in counts["events"]:
        if e["kind"] == 0:
            begin[e["id"]] = e
        elif e["kind"] == 1 and e["id"] in begin:
            out[e["id"]] = (begin.pop(e["id"]), e)
    return out


def delta(b, e):
    total = e["total"] - b["total"]
    n = max(len(b["per_vcpu"]), len(e["per_vcpu"]))
    pb = b["per_vcpu"] + [0] * (n - len(b["per_vcpu"]))
    pe = e["per_vcpu"] + [0] * (n - len(e["per_vcpu"]))
    per = {str(i): pe[i] - pb[i] for i in range(n) if pe[i] - pb[i]}
    return total, per


def ms(insns, ipc):
    return round(insns / (ipc * CLOCK_HZ) * 1e3, 3)


def join(stages, counts):
    p = pairs(counts)
    marker_cost = None
    if 0 in p:
        marker_cost = delta(*p[0])[0]
    regions = []
    for r in stages["regions"]:
        r = dict(r)
        r.pop("traceback", None) if r.get("status") == "ok" else None
        if r.get("status") == "ok":
            if r["id"] not in p:
                r["status"] = "error"
                r["note"] = "no marker pair in the plugin output"
            else:
                total, per = delta(*p[r["id"]])
                r["instructions"] = total
                r["instructions_per_thread"] = per
                r["threads_active"] = len(per)
                r["est_a9_ms"] = {"ipc_1.0": ms(total, IPC_HIGH), "ipc_0.6": ms(total, IPC_LOW)}
                n = r.get("n_images")
                if n:
                    r["instructions_per_image"] = round(total / n)
                    r["est_a9_ms_per_image"] = {"ipc_1.0": ms(total / n, IPC_HIGH),
                                                "ipc_0.6": ms(total / n, IPC_LOW)}
        regions.append(r)
    first = counts["events"][0]["total"] if counts["events"] else None
    env = {k: v for k, v in stages.items() if k != "regions"}
    return {"environment": env, "marker_pair_instructions": marker_cost,
            "instructions_before_first_marker": first,
            "instructions_whole_process": counts.get("final_total"),
            "vcpus_seen": counts.get("n_vcpus_seen"), "regions": regions}


def selftest(test, counts):
    p = pairs(counts)
    n = test["N"]
    out = {"N": n, "marker_return": test["marker_return"], "marker_errno": test["marker_errno"]}
    checks = [(1, "main thread spin(N)", 3 * n), (2, "2 threads x spin(2N), create+join", 12 * n),
              (3, "empty region", 0)]
    ok = True
    for rid, what, expect in checks:
        total, per = delta(*p[rid])
        extra = total - expect
        # allow the marker call itself and thread start/join: < 0.5% of the expected count,
        # or 2,000 instructions for the empty region
        good = 0 <= extra <= max(2000, expect // 200)
        ok &= good
        out[f"region_{rid}"] = {"what": what, "expected": expect, "counted": total,
                                "excess": extra, "per_thread": per, "ok": good}
    out["ok"] = ok
    return out


def markdown(report):
    """The docs table: per stage, default BLAS run, with the reference-BLAS figure beside it."""
    runs = report["runs"]
    ref = {r["name"]: r for r in runs.get("reference_blas", {}).get("regions", [])
           if r.get("status") == "ok"}
    lines = ["| region | images | guest instructions | per image | est. Cortex-A9 per image, "
             "IPC 1.0-0.6 | reference BLAS, per image |", "|---|---|---|---|---|---|"]
    for r in runs["default"]["regions"]:
        if r.get("status") != "ok":
            lines.append(f"| `{r['name']}` | | {r.get('status')}: {r.get('note', '')} | | | |")
            continue
        n = r.get("n_images") or 1
        e = r["est_a9_ms"]
        rr = ref.get(r["name"])
        lines.append(
            f"| `{r['name']}` | {r.get('n_images') or '-'} | {r['instructions'] / 1e6:,.2f} M | "
            f"{r['instructions'] / n / 1e6:,.2f} M | "
            f"{e['ipc_1.0'] / n:,.1f}-{e['ipc_0.6'] / n:,.1f} ms | "
            + (f"{rr['instructions'] / n / 1e6:,.2f} M" if rr else "") + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", nargs=3, action="append", metavar=("NAME", "STAGES", "COUNTS"),
                    default=[])
    ap.add_argument("--selftest", nargs=2, metavar=("TEST", "COUNTS"))
    ap.add_argument("--meta", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown", help="also write the docs table (markdown) here")
    args = ap.parse_args(argv)
    with open(args.meta) as f:
        report = json.load(f)
    report["ipc_assumption"] = {
        "clock_hz": CLOCK_HZ, "ipc_low": IPC_LOW, "ipc_high": IPC_HIGH,
        "meaning": "est_a9_ms = guest instructions / (IPC x 650 MHz); a Cortex-A9 "
                   "(dual-issue, out-of-order, 64-bit NEON datapath) assumed to sustain "
                   "0.6-1.0 guest instructions per cycle; an assumption, not a measurement"}
    if args.selftest:
        with open(args.selftest[0]) as f:
            t = json.load(f)
        with open(args.selftest[1]) as f:
            c = json.load(f)
        report["plugin_selftest"] = selftest(t, c)
    report["runs"] = {}
    for name, s, c in args.run:
        with open(s) as f:
            stages = json.load(f)
        with open(c) as f:
            counts = json.load(f)
        report["runs"][name] = join(stages, counts)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(report))
    # a short table on stdout
    for name, run in report["runs"].items():
        print(f"== {name}")
        for r in run["regions"]:
            if r.get("status") != "ok":
                print(f"  {r['name']:<28} {r.get('status')}: {r.get('note', '')[:90]}")
                continue
            n = r.get("n_images") or 1
            print(f"  {r['name']:<28} {r['instructions'] / 1e6:10.2f} M"
                  f"  per image {r['instructions'] / n / 1e6:8.3f} M"
                  f"  A9 {r['est_a9_ms']['ipc_1.0'] / n:8.2f}-"
                  f"{r['est_a9_ms']['ipc_0.6'] / n:8.2f} ms/img"
                  f"  threads {r['threads_active']}")
    st = report.get("plugin_selftest")
    if st is not None:
        print("plugin self-test:", "ok" if st["ok"] else "FAILED",
              {k: v["counted"] for k, v in st.items() if k.startswith("region_")})
        if not st["ok"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
