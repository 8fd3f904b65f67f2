"""Recipe variables: the safe ``eval(...)`` evaluator, dependency order and recipe_args."""

from __future__ import annotations

import time

import pytest
from omegaconf import OmegaConf

from acdc_exp.errors import ConfigError
from acdc_exp.recipe import evaluate, parse_recipe_args, resolve_variables

# the reference recipe's variables, as written
RECIPE_VARS = {
    "num_epochs": 206,
    "lr_warmup_epochs": 5,
    "init_lr": 0.0512,
    "warmup_lr": 0.256,
    "weight_decay": 0.00001,
    "quantization_epochs": 6,
    "quantization_start_epoch": "eval(num_epochs - quantization_epochs)",
    "quantization_end_epoch": "eval(num_epochs)",
    "quantization_init_lr": 0.00005,
    "quantization_observer_epochs": 1,
    "quantization_keep_bn_epochs": 2,
    "pruning_epochs_fraction": 0.925,
    "pruning_epochs": "eval(int((num_epochs - quantization_epochs) * pruning_epochs_fraction))",
    "pruning_start_epoch": "eval(lr_warmup_epochs)",
    "pruning_end_epoch": "eval(pruning_start_epoch + pruning_epochs)",
    "pruning_update_frequency": 5,
    "pruning_sparsity": 0.85,
    "pruning_final_lr": 0.0,
}


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("2 ** 10", 1024),
        ("-a + +b", 1),
        ("int(a * 0.925)", 1),
        ("float(a)", 2.0),
        ("abs(-a)", 2),
        ("min(a, b, 1)", 1),
        ("max(a, b)", 3),
        ("round(b / 7, 2)", 0.43),
        ("round(2.6)", 3),
    ],
)
def test_evaluate_arithmetic(expr, expected):
    assert evaluate(expr, {"a": 2, "b": 3}) == expected


@pytest.mark.parametrize(
    "expr, why",
    [
        ("__import__('os')", "call of __import__"),
        ("().__class__", "Attribute"),
        ("num_epochs.real", "Attribute"),
        ("open('x')", "call of open"),
        ("9**9**9", "exponent 387420489 exceeds 1000"),
        ("10 ** 30", "exceeds 1e+18"),
        ("(lambda: 1)()", "call of Lambda"),
        ("'abc'", "literal 'abc' is not a number"),
        ("[x for x in (1, 2)]", "ListComp"),
        ("num_epochs[0]", "Subscript"),
        ("eval('1')", "call of eval"),
        ("num_epochs if 1 else 2", "IfExp"),
        ("num_epochs > 1", "Compare"),
        ("True + 1", "literal True is not a number"),
        ("min(num_epochs, key=abs)", "keyword"),
        ("1 +", "not a valid expression"),
        ("round(5, -10**9)", "round's digits must be an integer in [-100, 100]"),
        ("(x := 1)", "NamedExpr"),
        ("1e999 - 1", "result inf is not finite"),
        ("1" * 30, "exceeds 1e+18"),
    ],
)
def test_hostile_expressions_are_refused(expr, why):
    with pytest.raises(ConfigError) as err:
        evaluate(expr, {"num_epochs": 206})
    msg = str(err.value)
    assert "\n" not in msg
    assert repr(expr) in msg and why in msg
    assert "allowed: numbers, recipe variables" in msg


def test_refusals_are_fast():
    start = time.perf_counter()
    for expr in ("9**9**9", "2**1000 * 2**1000", "(10**18)**999", "-(9**999)"):
        with pytest.raises(ConfigError):
            evaluate(expr, {})
    assert time.perf_counter() - start < 1.0


def test_long_and_deep_expressions_are_refused():
    with pytest.raises(ConfigError, match="characters long; allowed: at most 500"):
        evaluate("+".join(["1"] * 400), {})
    deep = "(" * 40 + "1" + ")" * 40  # parentheses alone add no depth
    assert evaluate(deep, {}) == 1
    with pytest.raises(ConfigError, match="nested deeper than 32 levels"):
        evaluate("-" * 40 + "1", {})


def test_division_by_zero_and_string_operands():
    with pytest.raises(ConfigError, match="divides by zero"):
        evaluate("a / (b - 3)", {"a": 1, "b": 3})
    with pytest.raises(ConfigError, match="left operand is 'block4', not a number"):
        evaluate("mask + 1", {"mask": "block4"})
    # a bare name copies any variable, strings included
    assert evaluate("mask", {"mask": "block4"}) == "block4"


def test_reference_recipe_variables():
    v = resolve_variables(RECIPE_VARS)
    assert v["quantization_start_epoch"] == 200
    assert v["quantization_end_epoch"] == 206
    assert v["pruning_epochs"] == 185  # int(200 * 0.925)
    assert v["pruning_start_epoch"] == 5
    assert v["pruning_end_epoch"] == 190
    assert list(v) == list(RECIPE_VARS)  # file order kept


def test_num_epochs_150_rederives_every_dependent():
    v = resolve_variables(RECIPE_VARS, {"num_epochs": 150})
    assert v["num_epochs"] == 150
    assert v["quantization_start_epoch"] == 144
    assert v["quantization_end_epoch"] == 150
    assert v["pruning_epochs"] == int(144 * 0.925) == 133
    assert v["pruning_end_epoch"] == 138
    # and a derived variable can be overridden directly, its dependents following
    v = resolve_variables(RECIPE_VARS, {"pruning_epochs": 100})
    assert v["pruning_end_epoch"] == 105 and v["quantization_start_epoch"] == 200


def test_dependency_order_not_file_order_and_cycles():
    v = resolve_variables({"c": "eval(b * 2)", "b": "eval(a + 1)", "a": 1})
    assert v == {"c": 4, "b": 2, "a": 1}
    with pytest.raises(ConfigError, match="cycle: (a -> b -> a|b -> a -> b)"):
        resolve_variables({"a": "eval(b + 1)", "b": "eval(a + 1)", "c": 3})
    with pytest.raises(ConfigError, match="cycle: x -> x"):
        resolve_variables({"x": "eval(x)"})
    with pytest.raises(ConfigError, match="uses nope, not defined by the recipe; defined: a, b"):
        resolve_variables({"a": 1, "b": "eval(a + nope)"})


def test_recipe_args_forms():
    expected = {"num_epochs": 150}
    assert parse_recipe_args('{"num_epochs": 150}') == expected
    assert parse_recipe_args("{num_epochs: 150}") == expected  # YAML flow mapping
    assert parse_recipe_args(expected) == expected
    assert parse_recipe_args(OmegaConf.create(expected)) == expected
    assert parse_recipe_args(None) == {} and parse_recipe_args("") == {}
    with pytest.raises(ConfigError, match="is not a mapping"):
        parse_recipe_args("[1, 2]")
    with pytest.raises(ConfigError, match="not valid JSON or YAML"):
        parse_recipe_args("{num_epochs: [")
    with pytest.raises(ConfigError, match="num_epochs=\\[1\\] is not a scalar"):
        parse_recipe_args({"num_epochs": [1]})


def test_unknown_recipe_arg_lists_defined_variables():
    with pytest.raises(ConfigError) as err:
        resolve_variables(RECIPE_VARS, {"num_epoch": 150})
    msg = str(err.value)
    assert "recipe_args sets num_epoch, not defined by the recipe" in msg
    assert "defined: num_epochs, lr_warmup_epochs," in msg
