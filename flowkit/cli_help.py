"""Examples shown at the end of each command's ``--help`` (argparse epilogs)."""

from __future__ import annotations

__all__ = ["EXAMPLES"]

EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": (
        "flowkit run pipeline.py:flow --param date=2026-11-24    # run, or resume, this run",
        "flowkit run etl.yaml -w 4 --rerun transform             # redo a step and downstream",
    ),
    "schedule": (
        "flowkit schedule pipeline.py:flow --cron '0 2 * * *' --date-param date",
        "flowkit schedule etl.yaml --print-systemd               # a service to install instead",
    ),
    "status": (
        "flowkit status pipeline.py:flow --param date=2026-11-24",
        "flowkit status etl.yaml --json | jq '.steps[] | select(.state == \"failed\")'",
    ),
    "show": ("flowkit show pipeline.py:flow --step load              # one step in detail",),
    "cancel": ("flowkit cancel pipeline.py:flow --param date=2026-11-24",),
    "explain": (
        "flowkit explain pipeline.py:flow transform              # cached, or why it would run",
        "flowkit explain etl.yaml load --json",
    ),
    "runs": ("flowkit runs pipeline.py:flow", "flowkit runs etl.yaml --json"),
    "clean": (
        "flowkit clean pipeline.py:flow --older-than 30d --dry-run",
        "flowkit clean etl.yaml --all",
    ),
    "graph": (
        "flowkit graph pipeline.py:flow --format mermaid",
        "flowkit graph etl.yaml --json                          # nodes and edges",
    ),
    "report": ("flowkit report pipeline.py:flow --html report.html",),
    "logs": ("flowkit logs pipeline.py:flow load --tail 20",),
    "config": ("flowkit config                                       # settings and sources",),
    "completion": (
        "flowkit completion bash > ~/.local/share/bash-completion/completions/flowkit",
        "flowkit completion zsh > ~/.zfunc/_flowkit",
        "flowkit completion fish > ~/.config/fish/completions/flowkit.fish",
    ),
}


def epilog(command: str) -> str | None:
    """The ``examples:`` block of a command's help, or None."""
    lines = EXAMPLES.get(command)
    return "examples:\n" + "\n".join(f"  {line}" for line in lines) if lines else None
