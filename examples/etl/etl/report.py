"""Always runs: writes out/report.txt with the merge's outcome."""

import os

status, rows = os.environ["MERGE_STATUS"], os.environ["MERGE_ROWS"]
with open("out/report.txt", "w") as f:
    f.write(f"merge {status}: {rows} rows\n")
print(f"report: merge {status}, {rows} rows")
