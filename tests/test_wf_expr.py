"""Templates and the safe evaluator: what they compute, and what they refuse at load time."""

from __future__ import annotations

import pytest

from flowkit.wf_expr import ExprError, compile_condition, parse_template

NAMES = {
    "matrix": {"batch": 3},
    "params": {"day": "2026-11-25"},
    "load": {"status": "failed", "exit_code": 2, "failed": True, "output": {"rows": [1, 2]}},
}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("load.exit_code != 0", True),
        ("load.failed and matrix.batch > 2", True),
        ("not load.failed or params.day == '2026-11-25'", True),
        ("load.status in ['failed', 'timed_out']", True),
        ("load.output.rows[1] + matrix.batch", 5),
        ("load.output['rows'][0] == 1", True),
        ("'yes' if load.failed else 'no'", "yes"),
        ("null is None and true", True),
    ],
)
def test_conditions_evaluate_comparisons_boolean_logic_and_lookups(
    text: str, value: object
) -> None:
    expr = compile_condition("{{ " + text + " }}")
    assert not isinstance(expr, bool)
    assert expr.evaluate(NAMES) == value
    bare = compile_condition(text)
    assert not isinstance(bare, bool) and bare.evaluate(NAMES) == value


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("load.__class__", "names starting with _"),
        ("__import__('os').system('true')", "calls are not allowed"),
        ("load.output.__class__.__bases__", "names starting with _"),
        ("load['__class__']", "keys starting with '_'"),
        ("[x for x in load]", "comprehensions are not allowed"),
        ("(lambda: 1)()", "not allowed"),
        ("open('/etc/passwd')", "calls are not allowed"),
        ("load.output[matrix.batch]", "takes a literal key"),
        ("f'{load}'", "f-strings are not allowed"),
        ("load.exit_code ** 99999999", "BinOp is not allowed"),
    ],
)
def test_dangerous_expressions_are_refused_when_compiled(text: str, refused: str) -> None:
    with pytest.raises(ExprError, match=refused):
        compile_condition(text)


def test_string_repetition_is_refused_at_run_time_without_building_the_string() -> None:
    expr = compile_condition("params.day * 1000000000")
    assert not isinstance(expr, bool)
    with pytest.raises(ExprError, match="arithmetic needs numbers"):
        expr.evaluate(NAMES)


def test_templates_render_parts_as_text_and_a_lone_template_keeps_its_type() -> None:
    t = parse_template("batch-{{ matrix.batch }} of {{ params.day }}")
    assert t.render(NAMES) == "batch-3 of 2026-11-25"
    assert parse_template("{{ matrix.batch }}").render(NAMES) == 3
    assert parse_template("{{ load.output }}").text(NAMES) == '{"rows":[1,2]}'
    assert parse_template("{{ load.failed }}").text(NAMES) == "true"
    assert t.refs == {("matrix", "batch"), ("params", "day")}


def test_missing_keys_and_unclosed_templates_are_errors() -> None:
    with pytest.raises(ExprError, match="no key 'nope'"):
        parse_template("{{ params.nope }}").render(NAMES)
    with pytest.raises(ExprError, match="without a closing"):
        parse_template("a {{ params.day")
    with pytest.raises(ExprError, match="not a valid expression"):
        compile_condition("load.status ==")
