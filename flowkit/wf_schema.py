"""The workflow dialect in one table: every key, its synonyms, its type and what it does.

The loader (:mod:`flowkit.workflow`) accepts exactly these keys, the guide's table lists them,
and ``flowkit/workflow.schema.json`` (JSON Schema, for editors) is generated from them:
``python -m flowkit.wf_schema > flowkit/workflow.schema.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HINTS", "TASK_KEYS", "TOP_KEYS", "Key", "canonical", "json_schema"]

_NUM = {"type": "number", "exclusiveMinimum": 0}
_STR_MAP = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
_ARGV = {"type": "array", "items": {"type": ["string", "number"]}, "minItems": 1}
_TEMPLATE_BOOL = {"type": ["string", "boolean"]}


@dataclass(frozen=True)
class Key:
    """One key of the dialect."""

    name: str
    help: str
    schema: dict[str, Any]
    synonyms: tuple[str, ...] = ()
    defaultable: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


#: ``cache:`` true, false or shared.
_CACHE: dict[str, Any] = {"anyOf": [{"type": "boolean"}, {"const": "shared"}]}

TASK_KEYS: tuple[Key, ...] = (
    Key(
        "script",
        "a script, relative to the workflow file; .py runs with flowkit's Python",
        {"type": "string", "minLength": 1},
    ),
    Key(
        "command",
        "an argv list (no shell), or a string run by the shell",
        {"anyOf": [{"type": "string", "minLength": 1}, _ARGV]},
        ("run",),
    ),
    Key(
        "fn",
        "a Python callable, module:function, importable from the workflow's folder",
        {"type": "string", "pattern": "^[A-Za-z_][\\w.]*:[A-Za-z_]\\w*$"},
    ),
    Key("args", "arguments appended to the script or command (templates allowed)", _ARGV),
    Key("description", "what the task is for (shown by graph and report)", {"type": "string"}),
    Key(
        "depends_on",
        "tasks that must finish first",
        {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    ),
    Key(
        "retries",
        "attempts after the first when it fails",
        {"type": "integer", "minimum": 0},
        defaultable=True,
    ),
    Key(
        "retry_backoff",
        "fixed | exponential (or a number of seconds: a fixed delay)",
        {"anyOf": [{"enum": ["fixed", "exponential"]}, {"type": "number", "minimum": 0}]},
        ("backoff",),
        defaultable=True,
    ),
    Key(
        "retry_delay_ms",
        "the first delay between attempts, in milliseconds (default 1000)",
        {"type": "number", "minimum": 0},
        defaultable=True,
    ),
    Key(
        "timeout_seconds",
        "seconds an attempt may take; then its process group is killed",
        _NUM,
        ("timeout",),
        defaultable=True,
    ),
    Key("timeout_minutes", "the same in minutes (fractions allowed)", _NUM, defaultable=True),
    Key(
        "environment",
        "variables merged over the process environment (templates allowed)",
        _STR_MAP,
        ("env",),
        defaultable=True,
    ),
    Key(
        "working_dir",
        "where it runs, relative to the workflow file (default: its folder)",
        {"type": "string"},
        ("cwd",),
        defaultable=True,
    ),
    Key(
        "cpu_cores",
        "CPUs it needs: no more run at once than the machine has",
        _NUM,
        ("cpus",),
        defaultable=True,
    ),
    Key("memory_mb", "memory it needs, in MiB", _NUM, defaultable=True),
    Key(
        "memory",
        "memory it needs: bytes or a size like 4GB",
        {"type": ["integer", "string"]},
        defaultable=True,
    ),
    Key(
        "disk_gb",
        "disk it needs, in GB (a recorded hint)",
        {"type": "number", "minimum": 0},
        defaultable=True,
    ),
    Key(
        "matrix",
        "lists of values: one instance per combination (matrix.KEY in templates)",
        {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "array", "minItems": 1},
        },
    ),
    Key(
        "parallelism",
        "with a matrix: at most this many instances at once",
        {"type": "integer", "minimum": 1},
    ),
    Key("condition", "run only when this expression is true (else: skipped)", _TEMPLATE_BOOL),
    Key("skip_if", "skip when this expression is true", _TEMPLATE_BOOL),
    Key("run_always", "run whatever happened upstream (the 'always' trigger)", {"type": "boolean"}),
    Key(
        "trigger",
        "a trigger rule: all_success, none_failed, all_done, one_failed, all_failed, always",
        {"enum": ["all_success", "none_failed", "all_done", "one_failed", "all_failed", "always"]},
        defaultable=True,
    ),
    Key(
        "cache",
        "false: run on every invocation, even when resuming; shared: also reuse a result with "
        "the same cache key from any run of the workflow",
        _CACHE,
        defaultable=True,
    ),
    Key("cache_ttl", "seconds after which a finished result is not reused", _NUM, defaultable=True),
    Key(
        "inputs",
        "files (globs allowed) whose content is part of the cache key",
        {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    ),
    Key(
        "pool",
        "a pool declared under 'pools': caps how many of its tasks run at once",
        {"type": "string"},
    ),
    Key("isolate", "run each attempt in a fresh process", {"type": "boolean"}),
)

TOP_KEYS: tuple[Key, ...] = (
    Key("name", "the workflow's name (default: the file's name)", {"type": "string"}),
    Key("version", "the workflow's version (recorded)", {"type": ["string", "number"]}),
    Key("description", "what the workflow does", {"type": "string"}),
    Key(
        "params",
        "run parameters and their defaults ($FLOWKIT_PARAM_<NAME>, params.NAME)",
        {"type": "object"},
    ),
    Key("defaults", "task keys applied to every task that does not set them", {"type": "object"}),
    Key(
        "cache",
        "shared: every task that does not set cache may reuse a result with the same cache key "
        "from any run of the workflow (as defaults: {cache: shared})",
        _CACHE,
    ),
    Key(
        "pools",
        "named concurrency limits: {db: 2}",
        {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
    ),
    Key(
        "tasks",
        "the tasks, by name, in file order",
        {"type": "object", "minProperties": 1},
        ("steps",),
    ),
    Key(
        "notifications", "on_success, on_failure, on_finish: lists of channels", {"type": "object"}
    ),
    Key(
        "schedule",
        "a five-field cron expression used by flowkit schedule: '0 2 * * *'",
        {"type": "string", "pattern": "^\\S+( \\S+){4}$"},
        ("cron",),
    ),
)

NOTIFICATION_EVENTS = ("on_success", "on_failure", "on_finish")

#: Names other tools use, and the key meant (suggested in "unknown key" messages).
HINTS: dict[str, str] = {
    "if": "condition",
    "when": "condition",
    "only_if": "condition",
    "unless": "skip_if",
    "needs": "depends_on",
    "after": "depends_on",
    "requires": "depends_on",
    "deps": "depends_on",
    "dependencies": "depends_on",
    "file": "script",
    "path": "script",
    "script_path": "script",
    "cmd": "command",
    "shell": "command",
    "exec": "command",
    "variables": "environment",
    "vars": "environment",
    "env_vars": "environment",
    "envs": "environment",
    "workdir": "working_dir",
    "dir": "working_dir",
    "directory": "working_dir",
    "retry": "retries",
    "max_retries": "retries",
    "always": "run_always",
    "always_run": "run_always",
    "concurrency": "parallelism",
    "max_parallel": "parallelism",
    "jobs": "tasks",
    "function": "fn",
    "callable": "fn",
}


def canonical(keys: tuple[Key, ...]) -> dict[str, str]:
    """Every accepted spelling (names and synonyms) -> the key's name."""
    out: dict[str, str] = {}
    for k in keys:
        out[k.name] = k.name
        for s in k.synonyms:
            out[s] = k.name
    return out


def json_schema() -> dict[str, Any]:
    """The dialect as a JSON Schema (draft 2020-12) document."""

    def props(keys: tuple[Key, ...], only_defaultable: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in keys:
            if only_defaultable and not k.defaultable:
                continue
            for spelling in (k.name, *k.synonyms):
                extra = "" if spelling == k.name else f" (same as {k.name})"
                out[spelling] = {**k.schema, "description": k.help + extra}
        return out

    task = {
        "anyOf": [
            {"type": "string", "minLength": 1, "description": "a shell command"},
            {"type": "array", "items": {"type": "string"}, "description": "an argv list"},
            {"type": "object", "properties": props(TASK_KEYS), "additionalProperties": False},
        ]
    }
    channel = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": ["slack", "email", "pagerduty", "webhook"]}},
    }
    top = props(TOP_KEYS)
    top["tasks"] = top["steps"] = {
        **top["tasks"],
        "additionalProperties": {"$ref": "#/$defs/task"},
    }
    top["defaults"] = {
        **top["defaults"],
        "properties": props(TASK_KEYS, only_defaultable=True),
        "additionalProperties": False,
    }
    top["notifications"] = {
        **top["notifications"],
        "properties": {e: {"type": "array", "items": channel} for e in NOTIFICATION_EVENTS},
        "additionalProperties": False,
    }
    body = {"type": "object", "properties": top, "additionalProperties": False}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "flowkit workflow",
        "$defs": {"task": task, "body": body},
        "anyOf": [
            {"$ref": "#/$defs/body"},
            {
                "type": "object",
                "properties": {"workflow": {"$ref": "#/$defs/body"}},
                "required": ["workflow"],
                "additionalProperties": False,
            },
        ],
    }


def schema_text() -> str:
    """The JSON Schema as the text shipped in the package."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(schema_text(), end="")
