"""Sum the numbers of one batch; publish the sum. FAIL_BATCH=N makes batch N fail."""

import json
import os
import sys
from pathlib import Path

batch, size = int(os.environ["BATCH_ID"]), int(os.environ["BATCH_SIZE"])
if os.environ.get("FAIL_BATCH") == str(batch):
    sys.exit(f"batch {batch}: FAIL_BATCH={batch}, failing on purpose")
total = sum(range(batch * size, (batch + 1) * size))
Path(f"out/batch-{batch:02d}.txt").write_text(f"{total}\n")
print(f"batch {batch}: {total}")
Path(os.environ["FLOWKIT_OUTPUT"]).write_text(json.dumps({"batch": batch, "total": total}))
