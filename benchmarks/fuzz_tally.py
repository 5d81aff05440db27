"""Tallies of issue 14's fuzz suite (tests/cli/test_fuzz_bad_input.py): how each bad input ends.

Runs the suite with ``EDORIENT_FUZZ_TALLY`` (each case records its outcome: clear one-line
error, unclear error, silent wrong result, traceback, destroyed user file) and prints a
markdown table by group and the cases that are not a clear one-line error. From the repository
root:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz_tally.py
    git worktree add /tmp/fuzz_before OLD_COMMIT
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz_tally.py --src /tmp/fuzz_before/src

``--src`` puts another copy of the package first on the path (the suite itself is this tree's).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("clear one-line error", "unclear error", "silent wrong result", "traceback", "destroyed user file")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=None, help="source folder of the package to measure (default: this tree's)")
    ap.add_argument("--cases", action="store_true", help="list every case and its outcome")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tally = Path(tmp) / "tally.jsonl"
        env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", EDORIENT_FUZZ_TALLY=str(tally))
        if args.src:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (args.src, env.get("PYTHONPATH", "")) if p)
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "tests" / "cli" / "test_fuzz_bad_input.py")], cwd=ROOT, env=env,
                       stdout=subprocess.DEVNULL, check=False)
        rows = [json.loads(line) for line in tally.read_text().splitlines()] if tally.is_file() else []
    groups: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in rows:
        groups[r["case"].split(":")[0]][r["outcome"]] += 1
        groups["all"][r["outcome"]] += 1
    print("| group | cases | " + " | ".join(OUTCOMES) + " |")
    print("| --- | --- |" + " --- |" * len(OUTCOMES))
    for g, counts in sorted(groups.items(), key=lambda kv: kv[0] == "all"):  # "all" last
        print(f"| {g} | {sum(counts.values())} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
    print()
    for r in rows:
        if args.cases or r["outcome"] != OUTCOMES[0]:
            print(f"- {r['case']}: {r['outcome']} (exit {r['rc']}) {r['line'][:160]}")


if __name__ == "__main__":
    main()
