"""Run one command and report its wall time and peak memory (max RSS of the process tree's largest member).

A fresh interpreter per measurement, so the peak of an earlier benchmark never leaks into a later one.
Usage: python -m tests.benchmarks.measure -- COMMAND [ARGS...]  (prints one JSON line)
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    started = time.perf_counter()
    completed = subprocess.run(command, check=False)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"exit_code": completed.returncode, "seconds": round(seconds, 2),
                      "peak_rss_gb": round(peak_kib / 1024**2, 3)}))
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
