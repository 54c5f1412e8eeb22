"""Run a DVC command and print how long each stage took, from the moments DVC announces them.

    python tests/benchmarks/time_stages.py -- dvc exp run -S data.name=imagefolder -S data.path=PATH

Each line of the command's output is echoed with the seconds since start; at the end a table gives every
stage's wall time (from its "Running stage" line to the next stage's), the total, and the machine's CPU
(`lscpu`'s model and flags that matter: avx2, avx512f, avx512_bf16, amx_bf16), since figures differ by CPU.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

STAGE_LINE = re.compile(r"Running stage '([^']+)'")


def cpu_summary() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "lscpu not available"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    wanted = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags]
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs, {' '.join(wanted) or 'no AVX2'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, help="also write the timed output here")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    log = open(args.log, "w") if args.log else None
    start = time.perf_counter()
    marks: list[tuple[str, float]] = []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in process.stdout:
        now = time.perf_counter() - start
        found = STAGE_LINE.search(line)
        if found:
            marks.append((found.group(1), now))
        stamped = f"[{now:7.1f}s] {line}"
        sys.stdout.write(stamped)
        if log:
            log.write(stamped)
            log.flush()
    code = process.wait()
    total = time.perf_counter() - start
    rows = [(name, (marks[i + 1][1] if i + 1 < len(marks) else total) - at) for i, (name, at) in enumerate(marks)]
    report = ["", f"CPU: {cpu_summary()}", f"{'stage':<40} {'seconds':>8} {'minutes':>8}"]
    report += [f"{name:<40} {seconds:8.1f} {seconds / 60:8.2f}" for name, seconds in rows]
    report.append(f"{'total (exit ' + str(code) + ')':<40} {total:8.1f} {total / 60:8.2f}")
    print("\n".join(report))
    if log:
        log.write("\n".join(report) + "\n")
        log.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
