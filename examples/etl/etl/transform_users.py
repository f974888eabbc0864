"""Users keyed by id, names upper-cased."""

import json
from pathlib import Path

users = json.loads(Path("out/users_raw.json").read_text())
clean = {str(u["id"]): {"name": u["name"].upper(), "country": u["country"]} for u in users}
Path("out/users.json").write_text(json.dumps(clean))
print(f"transformed {len(clean)} users")
