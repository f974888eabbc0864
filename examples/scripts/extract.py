"""Writes the day's lines to out/extract.txt (a stand-in for a real export)."""

import os
from pathlib import Path

day = os.environ.get("FLOWKIT_PARAM_DAY", "today")
Path("out").mkdir(exist_ok=True)
Path("out/extract.txt").write_text("".join(f"{day} row {i}\n" for i in range(5)))
print(f"extracted 5 rows for {day}")
