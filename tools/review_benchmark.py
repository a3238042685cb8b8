#!/usr/bin/env python
"""
How many actions the review page takes per correction, in Debian's headless chromium: a case
of hand-built cells, its server, a fixed list of corrections made as a person makes them;
prints a table of the actions each took and its seconds (deepacc_d2/studies/review_benchmark.py).

    python tools/review_benchmark.py
"""

import argparse
import tempfile

from deepacc_d2.app.review.browser import missing_browser
from deepacc_d2.studies.review_benchmark import benchmark_case, markdown_table, run_benchmark


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", default="", help="write the case here (default: a temporary folder)")
    args = p.parse_args()
    if missing_browser():
        raise SystemExit(missing_browser())
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_benchmark(benchmark_case(args.case or tmp))
    print(markdown_table(rows))
    over = [r["correction"] for r in rows if r["count"] > r["limit"]]
    if over:
        raise SystemExit(f"over their limit: {', '.join(over)}")


if __name__ == "__main__":
    main()
