"""The benchmark suite: the machine's peak first, then every benchmark, one table.

Each entry of ``suite_entries.py`` runs as its own process (``OMP_NUM_THREADS`` = ``--threads``),
prints its own report and ``BENCH_RESULT`` lines (``bench_result.py``); the suite gathers them,
marks every target pass or fail, and writes ``benchmarks/README.md`` (the table, the machine and
its peak on top, then the hand-written notes of ``notes.md``) and ``benchmarks/results.json``.
Each entry's output goes to ``<--logs>/<entry>.log``.

    make bench                                   # = run_all.py --quick
    .venv/bin/python benchmarks/run_all.py --quick [--threads 2] [--only train_step inference_peak]
    .venv/bin/python benchmarks/run_all.py       # the scripts' own (larger) sizes: hours
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_result import PEAK_ENV, PREFIX
from suite_entries import ENTRIES
from suite_readme import write_outputs

HERE = Path(__file__).resolve().parent


def child_env(threads: int, peak: float | None = None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               BONE_BENCH_THREADS=str(threads), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    if peak is not None:
        env[PEAK_ENV] = f"{peak:.3f}"
    return env


def run_script(script: str, args: list[str], env: dict, log: Path) -> tuple[int, list[str], float]:
    """Run one benchmark script; its output is shown and kept in ``log``; returns its exit
    status, output lines and wall time."""
    t = time.perf_counter()
    lines = []
    with subprocess.Popen([sys.executable, str(HERE / script), *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=HERE.parent) as p:
        with log.open("w") as f:
            for line in p.stdout:
                f.write(line)
                lines.append(line.rstrip("\n"))
                if not line.startswith(PREFIX):
                    print("    " + line, end="", flush=True)
    return p.returncode, lines, time.perf_counter() - t


def measure_peak(threads: int, logs: Path) -> dict:
    code, lines, wall = run_script("peak.py", [], child_env(threads), logs / "peak.log")
    found = [json.loads(x[5:]) for x in lines if x.startswith("PEAK ")]
    if code != 0 or not found:
        print(f"error: the peak measurement failed; see {logs / 'peak.log'}", file=sys.stderr)
        sys.exit(1)
    return {**found[-1], "wall_s": wall}


def run_entry(entry, quick: bool, threads: int, peak: float, logs: Path) -> dict:
    args = list(entry.quick if quick else entry.full)
    print(f"\n== {entry.name}: {entry.script} {' '.join(args)}", flush=True)
    code, lines, wall = run_script(entry.script, args, child_env(threads, peak),
                                   logs / f"{entry.name}.log")
    rows = [json.loads(x[len(PREFIX):]) for x in lines if x.startswith(PREFIX)]
    print(f"   {entry.name}: {wall:.0f} s, exit {code}, {len(rows)} figure(s)", flush=True)
    return {"entry": entry.name, "question": entry.question, "script": entry.script,
            "args": args, "wall_s": wall, "exit_code": code, "rows": rows,
            "error": None if code == 0 else "\n".join(lines[-15:])}


def recorded_entry(entry) -> dict:
    data = json.loads((HERE / "recorded.json").read_text())
    rec = data[entry.name]
    rows = [{**r, "note": f"recorded {rec['date']}; " + r.get("note", "")} for r in rec["rows"]]
    return {"entry": entry.name, "question": entry.question, "script": entry.script,
            "args": rec["command"], "wall_s": 0.0, "exit_code": 0, "rows": rows,
            "recorded": rec["date"], "error": None}


def rerender() -> None:
    """README.md and results.json again from the last run's measured entries and today's
    recorded ones (a new recorded experiment needs no rerun of the suite)."""
    last = json.loads((HERE / "results.json").read_text())
    measured = {e["entry"]: e for e in last["entries"] if not e.get("recorded")}
    results = [recorded_entry(e) if e.recorded else measured[e.name]
               for e in ENTRIES if e.recorded or e.name in measured]
    today = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    readme, js = write_outputs(HERE, last["peak"], results, last["threads"], last["quick"],
                               last["wall_s"], date=last["date"], refreshed=today)
    print(f"wrote {readme} and {js} (measured entries of {last['date']}, recorded read in)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the 2-core sizes (~10 min in all)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads per benchmark process (default: every core)")
    ap.add_argument("--only", nargs="+", help="entries to run (default: all)")
    ap.add_argument("--logs", default="bench_logs", help="folder for each entry's output")
    ap.add_argument("--out", help="folder of README.md and results.json (default: benchmarks/; "
                    "with --only: the logs folder, so a partial run leaves the README alone)")
    ap.add_argument("--recorded-only", action="store_true",
                    help="run nothing: read the recorded entries in again and rewrite README.md "
                    "with the measured entries of the last results.json (its date kept)")
    args = ap.parse_args()
    if args.recorded_only:
        rerender()
        return
    names = {e.name for e in ENTRIES}
    unknown = sorted(set(args.only or ()) - names)
    if unknown or args.threads < 1:
        print(f"error: --only {' '.join(unknown)}: unknown entries (valid: "
              f"{', '.join(sorted(names))})" if unknown else "error: --threads must be >= 1",
              file=sys.stderr)
        sys.exit(2)
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    peak = measure_peak(args.threads, logs)
    print(f"peak: {peak['gmacs']:.1f} GMAC/s fp32 matmul, {peak['read_gbs']:.1f} GB/s read")
    results = []
    for entry in ENTRIES:
        if args.only and entry.name not in args.only:
            continue
        results.append(recorded_entry(entry) if entry.recorded
                       else run_entry(entry, args.quick, args.threads, peak["gmacs"], logs))
    wall = time.perf_counter() - t0
    out = Path(args.out) if args.out else (logs if args.only else HERE)
    readme, js = write_outputs(out, peak, results, args.threads, args.quick, wall,
                               partial=bool(args.only))
    print(f"\nsuite: {wall:.0f} s; wrote {readme} and {js}")
    failed = sum(1 for r in results if r["error"])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
