"""Fan-in: join users and order totals. ETL_BREAK_MERGE=1 makes it fail (to try a resume)."""

import json
import os
import sys
from pathlib import Path

if os.environ.get("ETL_BREAK_MERGE") == "1":
    sys.exit("merge: ETL_BREAK_MERGE=1, failing on purpose")
users = json.loads(Path("out/users.json").read_text())
orders = json.loads(Path("out/orders.json").read_text())
rows = [
    {"id": uid, **u, "total": orders["totals"].get(uid, 0.0), "currency": orders["currency"]}
    for uid, u in sorted(users.items())
]
Path("out/merged.json").write_text(json.dumps({"day": os.environ["DAY"], "rows": rows}))
print(f"merged {len(rows)} rows for {os.environ['DAY']}")
Path(os.environ["FLOWKIT_OUTPUT"]).write_text(json.dumps({"rows": len(rows)}))
