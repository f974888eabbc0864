"""Copy a source (a file standing in for an API or a database) into out/."""

import json
import os
import sys
from pathlib import Path

source, target = Path(sys.argv[1]), Path(sys.argv[2])
rows = json.loads(source.read_text())
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(json.dumps(rows))
print(f"extracted {len(rows)} rows from {source}")
Path(os.environ["FLOWKIT_OUTPUT"]).write_text(json.dumps({"rows": len(rows)}))
