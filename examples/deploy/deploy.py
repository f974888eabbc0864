"""A stand-in for a deploy tool: each action appends a line to out/deploy.log."""

import os
import sys

action, release = sys.argv[1], sys.argv[2]
os.makedirs("out", exist_ok=True)
line = f"{action} {release}" + (f" smoke={sys.argv[3]}" if action == "notify" else "")
with open("out/deploy.log", "a") as log:
    log.write(line + "\n")
print(line)
if action == "smoke" and os.environ.get("SMOKE_FAIL") == "1":
    sys.exit("smoke tests failed: /health answered 503")
