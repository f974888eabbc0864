"""Order totals per user, in $CURRENCY."""

import json
import os
from pathlib import Path

totals: dict[str, float] = {}
for order in json.loads(Path("out/orders_raw.json").read_text()):
    totals[str(order["user"])] = totals.get(str(order["user"]), 0.0) + order["amount"]
result = {"currency": os.environ["CURRENCY"], "totals": totals}
Path("out/orders.json").write_text(json.dumps(result))
print(f"totalled orders of {len(totals)} users")
