"""Add up the batches' published totals."""

import json
import os

batches = json.loads(os.environ["BATCH_TOTALS"])
grand = sum(b["total"] for b in batches)
with open("out/total.txt", "w") as f:
    f.write(f"{len(batches)} batches, total {grand}\n")
print(f"{len(batches)} batches, total {grand}")
