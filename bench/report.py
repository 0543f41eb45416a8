"""bench/run.sh's report: medians over the runs in RUNS_DIR of each bench script's JSON result,
written as a markdown report, and the README's benchmark table (between the
`<!-- bench:begin -->` and `<!-- bench:end -->` markers) regenerated from the same figures.

    python3 bench/report.py RUNS_DIR CORES REPORT.md README.md
"""

import glob
import json
import statistics
import sys

runs_dir, cores, report_path, readme_path = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]


def load(name):
    return [json.load(open(p)) for p in sorted(glob.glob(f"{runs_dir}/{name}-*.json"))]


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


acq, aud, heal, cert, hsh = load("acquire"), load("audit"), load("heal"), load("certify"), load("hash")
loop, scale, heal1g = load("loop"), load("scale"), load("heal1g")
rows = []  # (stage, work, t0, peer, ratio, target, met)


def ratio_row(stage, work, r, peer_name, target_time, target_mem=None, faster_is=">="):
    t, tm, p, pm = med(r, "t0_s"), med(r, "t0_mib"), med(r, "peer_s"), med(r, "peer_mib")
    tr, mr = t / p, tm / pm
    if faster_is == ">=":  # target: t0 at least `target_time` times faster than the peer
        met = p / t >= target_time
        ratio = f"{p / t:.2f}x faster, {mr:.2f}x memory"
        target = f">= {target_time}x faster"
    else:  # target: t0 within `target_time` times the peer's time (and memory)
        met = tr <= target_time and (target_mem is None or mr <= target_mem)
        ratio = f"{tr:.2f}x time, {mr:.2f}x memory"
        target = f"<= {target_time}x time" + (f", <= {target_mem}x memory" if target_mem else "")
    rows.append((stage, work, f"{t:.1f} s, {tm:,.0f} MiB", f"{peer_name} {p:.1f} s, {pm:,.0f} MiB", ratio, target,
                 "met" if met else "not met"))


if acq:
    ratio_row("acquire", f"{acq[0]['rows']:,} snapshot rows (CSV)", acq, "DuckDB read_csv", 3, 2, faster_is="<=")
if aud:
    ratio_row("audit", f"the peer's {aud[0]['checks']} checks over {aud[0]['rows']:,} rows", aud, "pandas", 10)
    rows.append(("audit (all clips checks)", "30 checks, drift and history included",
                 f"{med(aud, 'all_s'):.1f} s, {med(aud, 'all_mib'):,.0f} MiB", "-", "-", "-", "-"))
if heal:
    t, m = med(heal, "t0_s"), med(heal, "t0_mib")
    cells = int(med(heal, "cells"))
    rows.append(("heal", f"{cells:,} cells patched", f"{t:.1f} s, {m:,.0f} MiB",
                 "issue table: 75.4 s, 6.4 GB", f"{75.4 / t:.2f}x throughput", ">= 5x throughput, <= 2 GB",
                 "met" if 75.4 / t >= 5 and m <= 2048 else "not met"))
if cert:
    ratio_row("certify (base store)", f"{cert[0]['grid']:,} (entity, T0) rows", cert, "pandas merge_asof", 3)
    rows.append(("certify (all 5 stores)", f"{cert[0]['grid']:,} (entity, T0) rows",
                 f"{med(cert, 'all_s'):.1f} s, {med(cert, 'all_mib'):,.0f} MiB", "-", "-", "-", "-"))
    if cert[0].get("k_grid"):
        km = med(cert, "k_mib")
        rows.append(("certify every_k_days (all 5 stores)", f"{cert[0]['k_grid']:,} (entity, T0) rows",
                     f"{med(cert, 'k_s'):.1f} s, {km:,.0f} MiB", "-", "-", "< 2.5 GB", "met" if km < 2560 else "not met"))
    if cert[0].get("replay_rows"):
        rows.append(("certify every_k_days again: replay check", f"{int(cert[0]['replay_rows']):,} rows compared",
                     f"{med(cert, 'replay_s'):.1f} s of {med(cert, 'k2_s'):.1f} s, {med(cert, 'k2_mib'):,.0f} MiB",
                     "-", "-", "-", "-"))
if heal1g:
    t, m = med(heal1g, "t0_s"), med(heal1g, "t0_mib")
    rows.append(("heal, T0CLIP_MEMORY_LIMIT=1GB", f"{int(med(heal1g, 'cells')):,} cells patched", f"{t:.1f} s, {m:,.0f} MiB",
                 "-", f"{75.4 / t:.2f}x throughput", "completes; <= 2 GB", "met" if m <= 2048 else "completes, memory not met"))
if loop:
    t, m = med(loop, "total_s"), med(loop, "peak_mib")
    rows.append(("whole loop", f"{loop[0]['entities']:,} entities x {loop[0]['snapshots']} snapshots ({loop[0]['rows']:,} rows)",
                 f"{t:.1f} s, {m:,.0f} MiB (largest stage)", "-", "-", "< 300 s, < 4 GB",
                 "met" if t < 300 and m < 4096 else "not met"))
if hsh:
    share = med(hsh, "share_of_raw")
    rows.append(("content hash", f"{hsh[0]['rows']:,} rows, {hsh[0]['bytes'] / 1e6:.0f} MB encoded, {hsh[0]['threads']} threads",
                 f"{med(hsh, 'content_hash_s'):.3f} s", f"raw blake3 {med(hsh, 'raw_blake3_s'):.3f} s",
                 f"{share:.2f} of raw throughput", ">= 0.50 of raw", "met" if share >= 0.5 else "not met"))

loop_table = ""
if loop:
    loop_table = "| stage | exit | wall s | peak MiB |\n|---|---|---|---|\n"
    for i, st in enumerate(loop[0]["stages"]):
        s_ = statistics.median(r["stages"][i]["s"] for r in loop)
        m_ = statistics.median(r["stages"][i]["mib"] for r in loop)
        loop_table += f"| {st['stage']} | {st['exit']} | {s_:.1f} | {m_:,.0f} |\n"
    loop_table += f"| **total** | | **{med(loop, 'total_s'):.1f}** | **{med(loop, 'peak_mib'):,.0f}** (largest stage) |\n"
scale_table = ""
if scale:
    sc = scale[0]
    worst = max(g for st in sc["stages"] for g in st["growth_per_4x"])
    scale_table = (f"Rows: {', '.join(f'{r:,}' for r in sc['rows'])} ({sc['base']:,}, {4 * sc['base']:,} and "
                   f"{16 * sc['base']:,} entities x {sc['snapshots']} snapshots). Target: time growth per 4x of data "
                   f"<= 4.5x; worst here {worst:.2f}x ({'met' if worst <= 4.5 else 'not met'}).\n\n"
                   "| stage | 1x s | 4x s | 16x s | growth 1x->4x | growth 4x->16x | peak MiB at 16x |\n|---|---|---|---|---|---|---|\n")
    for st in sc["stages"]:
        scale_table += (f"| {st['stage']} | {st['s'][0]:.1f} | {st['s'][1]:.1f} | {st['s'][2]:.1f} | "
                        f"{st['growth_per_4x'][0]:.2f}x | {st['growth_per_4x'][1]:.2f}x | {st['mib'][2]:,.0f} |\n")

head = "| stage | work | t0-clip | peer (same run) | ratio | target | |\n|---|---|---|---|---|---|---|\n"
table = head + "".join("| " + " | ".join(r) + " |\n" for r in rows)
agree = [f"{r['agree']}/{r['checks']}" for r in aud]
differ = [f"{r['joined']:,} joined, {r['differ']:,} differ" for r in cert]
counts = (f"acquire {len(acq)}, audit {len(aud)}, heal {len(heal)}, certify {len(cert)}, hash {len(hsh)}, "
          f"loop {len(loop)}, heal under 1 GB {len(heal1g)}, scaling {len(scale)}")
report = f"""# Data-half benchmarks

Written by `just bench` (`bash bench/run.sh`): medians over the runs of each bench script
(runs: {counts}) on one machine ({cores} cores), release build, both sides on the same data and
thread count. Raw results of every run: `$BENCH_DIR/runs/*.json`. Ratio "x faster" = peer
time / t0-clip time.

{table}
Correctness alongside the timings:
- audit failing counts that agree with pandas, per run: {", ".join(agree) or "-"}
- certify `base` values against pandas merge_asof, per run: {", ".join(differ) or "-"}
- heal: second heal exit codes {[r["again"] for r in heal + heal1g]} (99 = nothing left), verify-ledger {[r["verify"] for r in heal + heal1g]}

## The whole loop, per stage (medians; `bench/loop.sh`)

Each stage is its own process; the loop's peak memory is its largest stage's. The first audit
exits 1 (the generator's defects), heal answers it and the second audit passes; calibrate may
exit 1 when its acceptance state is BLOCK (a verdict, not a failure).

{loop_table or "not run"}
## Scaling (`bench/scale.sh`, one run)

{scale_table or "not run"}
"""
open(report_path, "w").write(report)

readme = open(readme_path).read()
begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
if begin in readme and end in readme:
    pre, rest = readme.split(begin, 1)
    _, post = rest.split(end, 1)
    note = f"\nMedians (runs: {counts}), {cores} cores; regenerated by `just bench` from `bench/report.md`.\n\n"
    open(readme_path, "w").write(pre + begin + note + table + end + post)
