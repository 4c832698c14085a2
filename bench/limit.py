#!/usr/bin/env python3
"""Holds `waiver check` against the limit: simdjson parsing the same plan (bench/limit.sh runs it).

For each plan: pysimdjson's parse, best of RUNS (a fresh parser each time, and one parser reused,
whose memory is already allocated: the faster, stricter reference), then `waiver check --format
json --output /dev/null` with the starter pack and a new register each run, best of RUNS, with its
peak RssAnon (memory beyond the mapped plan file) sampled from /proc/PID/status every 10 ms.
Prints one row per plan and the ratio waiver / simdjson (reused parser).
"""
import argparse, os, shutil, subprocess, sys, tempfile, threading, time


def simdjson_times(path, runs):
    import simdjson
    with open(path, "rb") as f:
        data = f.read()
    fresh = []
    for _ in range(runs):
        t = time.perf_counter()
        doc = simdjson.Parser().parse(data)
        fresh.append(time.perf_counter() - t)
        del doc
    parser = simdjson.Parser()
    parser.parse(data)  # allocate once
    reused = []
    for _ in range(runs):
        t = time.perf_counter()
        doc = parser.parse(data)
        reused.append(time.perf_counter() - t)
        del doc
    return min(fresh), min(reused)


def rss_anon_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def waiver_run(binary, plan, policies):
    work = tempfile.mkdtemp(prefix="waiver-limit-")
    try:
        cmd = [binary, "check", "--plan", plan, "--policies", policies, "--format", "json", "--output", "/dev/null"]
        env = dict(os.environ)  # the register is .waiver/ in the new working directory
        env.pop("CI", None)
        t = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = [0]

        def sample():
            while p.poll() is None:
                peak[0] = max(peak[0], rss_anon_kb(p.pid))
                time.sleep(0.01)
        s = threading.Thread(target=sample)
        s.start()
        _, err = p.communicate()
        wall = time.perf_counter() - t
        s.join()
        if p.returncode not in (0, 1):
            sys.exit(f"limit.py: waiver exited {p.returncode} on {plan}: {err.decode(errors='replace').strip()}")
        return wall, peak[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--policies", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-simdjson", action="store_true", help="only waiver (e.g. a plan over pysimdjson's 4 GiB limit)")
    ap.add_argument("plans", nargs="+")
    a = ap.parse_args()
    print("| resources | plan | simdjson fresh / reused parser | waiver check | ratio to reused | peak RssAnon |")
    print("|---|---|---|---|---|---|")
    for plan in a.plans:
        n = os.path.basename(plan).split("-")[1]
        size = os.path.getsize(plan) / 1e6
        fresh = reused = None
        if not a.no_simdjson:
            fresh, reused = simdjson_times(plan, a.runs)
        best, peak = None, 0
        for _ in range(a.runs):
            wall, rss = waiver_run(a.bin, plan, a.policies)
            best = wall if best is None else min(best, wall)
            peak = max(peak, rss)
        simd = f"{fresh:.3f} / {reused:.3f} s" if reused else "-"
        ratio = f"{best / reused:.1f}x" if reused else "-"
        print(f"| {int(n):,} | {size:,.1f} MB | {simd} | {best:.3f} s | {ratio} | {peak / 1024:.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
