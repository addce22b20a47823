"""Weight and activation statistics, pinned on known arrays and hand-set models without training.

`summarize` is compared with numpy on arrays whose statistics are known (zeros, NaN, Inf, integer and half-precision
values, values near the float32 limits); `weight_records` and `ActivationProbe` on small models whose weights are set
by hand, so every layer's output is computed here with numpy.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from kerascope.callbacks._statistics import HISTOGRAM_BINS, ActivationProbe, nested_layers, summarize, weight_records

# -- summarize ------------------------------------------------------------------------------------------------------


def test_summary_matches_numpy_on_known_values():
    values = np.array([[0.0, 1.5, -2.0], [4.0, 0.0, 0.5]], dtype="float32")
    stats = summarize(values)
    assert stats["mean"] == 4.0 / 6
    assert stats["std"] == pytest.approx(np.std(values.astype("float64")), rel=1e-12)
    assert (stats["min"], stats["max"]) == (-2.0, 4.0)
    assert stats["zero_frac"] == 2 / 6
    assert stats["count"] == 6
    histogram = stats["histogram"]
    assert len(histogram["counts"]) == HISTOGRAM_BINS == 30
    assert histogram["edges"] == pytest.approx(np.linspace(-2.0, 4.0, 31).tolist(), rel=1e-6)
    # Bins of width 0.2 from -2: -2 in bin 0, the two zeros in bin 10, 0.5 in 12, 1.5 in 17, the maximum in the last.
    expected = [0] * 30
    for index, count in ((0, 1), (10, 2), (12, 1), (17, 1), (29, 1)):
        expected[index] = count
    assert histogram["counts"] == expected
    assert isinstance(stats["count"], int)
    assert all(isinstance(stats[key], float) for key in ("mean", "std", "min", "max", "zero_frac"))


def test_the_mean_of_float32_values_is_accumulated_in_float64():
    values = np.full(100_000, 0.1, dtype="float32")
    values[::2] = 0.3
    exact = float(np.mean(values.astype("float64")))
    assert summarize(values)["mean"] == pytest.approx(exact, rel=1e-12)
    assert summarize(values)["std"] == pytest.approx(float(np.std(values.astype("float64"))), rel=1e-9)


def test_negative_zero_counts_as_zero():
    assert summarize(np.array([-0.0, 0.0, 1.0, 2.0], dtype="float32"))["zero_frac"] == 0.5


def test_an_empty_array_has_only_a_count():
    assert summarize(np.zeros((0, 3), dtype="float32")) == {"count": 0}


def test_a_single_value_has_a_histogram_around_it():
    stats = summarize(np.array([2.5], dtype="float32"))
    assert (stats["mean"], stats["std"], stats["min"], stats["max"], stats["count"]) == (2.5, 0.0, 2.5, 2.5, 1)
    assert sum(stats["histogram"]["counts"]) == 1
    assert stats["histogram"]["edges"][0] == 2.0 and stats["histogram"]["edges"][-1] == 3.0


def test_nan_shows_in_the_moments_and_the_histogram_counts_the_finite_values():
    stats = summarize(np.array([1.0, np.nan, 3.0, 0.0], dtype="float32"))
    assert all(math.isnan(stats[key]) for key in ("mean", "std", "min", "max"))
    assert (stats["zero_frac"], stats["count"]) == (0.25, 4)
    histogram = stats["histogram"]
    assert (histogram["edges"][0], histogram["edges"][-1]) == (0.0, 3.0)
    assert sum(histogram["counts"]) == 3
    assert (histogram["counts"][0], histogram["counts"][10], histogram["counts"][29]) == (1, 1, 1)


@pytest.mark.parametrize("infinite", [np.inf, -np.inf])
def test_an_infinite_value_shows_in_min_or_max_and_the_histogram_spans_the_finite_ones(infinite):
    stats = summarize(np.array([1.0, infinite, -1.0, 0.5], dtype="float32"))
    assert stats["mean"] == infinite
    assert (stats["min"], stats["max"]) == ((-1.0, np.inf) if infinite > 0 else (-np.inf, 1.0))
    histogram = stats["histogram"]
    assert (histogram["edges"][0], histogram["edges"][-1]) == (-1.0, 1.0)
    assert sum(histogram["counts"]) == 3
    assert (histogram["counts"][0], histogram["counts"][22], histogram["counts"][29]) == (1, 1, 1)


def test_values_that_are_all_nan_have_no_histogram():
    stats = summarize(np.full(3, np.nan, dtype="float32"))
    assert stats["histogram"] is None
    assert stats["count"] == 3 and math.isnan(stats["mean"])


def test_values_near_the_float32_limits_are_binned_in_float64():
    stats = summarize(np.array([-3e38, 0.0, 3e38], dtype="float32"))
    counts = stats["histogram"]["counts"]
    assert counts == [1] + [0] * 14 + [1] + [0] * 13 + [1]
    edges = stats["histogram"]["edges"]
    assert all(math.isfinite(edge) for edge in edges) and edges == sorted(edges)


def test_one_huge_negative_value_is_enough_for_float64_bins():
    stats = summarize(np.array([-3e38, 0.0, 1.0], dtype="float32"))
    assert sum(stats["histogram"]["counts"]) == 3
    assert stats["histogram"]["counts"][0] == 1 and stats["histogram"]["counts"][-1] == 2
    assert all(math.isfinite(edge) for edge in stats["histogram"]["edges"])


def test_a_range_too_narrow_for_30_bins_has_no_histogram_but_its_statistics():
    above_one = np.nextafter(np.float32(1.0), np.float32(2.0))
    stats = summarize(np.array([1.0, above_one], dtype="float32"))
    assert stats["histogram"] is None
    assert (stats["min"], stats["max"], stats["count"]) == (1.0, float(above_one), 2)


def test_boolean_values_are_summarized_as_zeros_and_ones():
    stats = summarize(np.array([True, False, True, True]))
    assert (stats["mean"], stats["min"], stats["max"], stats["zero_frac"]) == (0.75, 0.0, 1.0, 0.25)
    assert stats["histogram"]["counts"][0] == 1 and stats["histogram"]["counts"][-1] == 3


def test_integer_weights_keep_their_exact_values():
    # Above 2**24 float32 cannot hold every integer: an int32 counter is summarized without going through it.
    stats = summarize(np.array([16_777_217, 3], dtype="int32"))
    assert (stats["min"], stats["max"]) == (3.0, 16_777_217.0)
    assert stats["mean"] == 8_388_610.0


def test_half_precision_values_get_histogram_edges_finer_than_float16():
    stats = summarize(np.array([0.0, 1000.0], dtype="float16"))
    assert stats["histogram"]["edges"] == pytest.approx(np.linspace(0.0, 1000.0, 31).tolist(), rel=1e-6)
    assert (stats["mean"], stats["max"]) == (500.0, 1000.0)


def test_int8_values_are_summarized_as_floats():
    stats = summarize(np.array([-3, 0, 5, 0], dtype="int8"))
    assert (stats["mean"], stats["min"], stats["max"], stats["zero_frac"]) == (0.5, -3.0, 5.0, 0.5)
    assert sum(stats["histogram"]["counts"]) == 4


# -- models with hand-set weights -----------------------------------------------------------------------------------

KERNEL = np.array([[1.0, 0.0, -1.0], [0.5, 0.0, 2.0]], dtype="float32")
BIAS = np.array([0.1, 0.0, -0.2], dtype="float32")
INNER_KERNEL = np.array([[2.0], [-1.0], [0.0]], dtype="float32")
INNER_BIAS = np.array([0.25], dtype="float32")
BN_EPSILON = 1e-3


class Halves(keras.layers.Layer):
    """A layer with two outputs: the first column and the rest."""

    def call(self, x):
        return x[:, :1], x[:, 1:]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1), (input_shape[0], input_shape[1] - 1)


class EmptyWeight(keras.layers.Layer):
    """A pass-through layer with a zero-size weight (a slot some layers keep for an optional feature)."""

    def build(self, input_shape):
        self.slot = self.add_weight(shape=(0,), initializer="zeros", name="slot")

    def call(self, x):
        return x


class Doubler(keras.Model):
    """A subclassed model: its layers are called by its own Python code."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1, name="inside")

    def call(self, x):
        return self.dense(x) * 2.0


def build_known_model() -> keras.Model:
    """x(2) -> dense(relu) -> drop -> bn -> halves -> [first, rest]; rest -> inner (Sequential: scale) ; shared dense
    applied to x twice (x and -x)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((2,), name="x")
    dense = keras.layers.Dense(3, activation="relu", name="dense")
    h = dense(x)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    h = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="bn")(h)
    first, rest = Halves(name="halves")(h)
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name="inner_dense"), EmptyWeight(name="empty")],
                             name="inner")
    scaled = inner(h)
    shared = keras.layers.Dense(1, name="shared", use_bias=False)
    negated = keras.layers.Lambda(lambda t: -t, name="negate")(x)
    twice = keras.layers.Add(name="add")([shared(x), shared(negated)])
    model = keras.Model(x, [first, rest, scaled, twice], name="known")
    dense.set_weights([KERNEL, BIAS])
    inner.get_layer("inner_dense").set_weights([INNER_KERNEL, INNER_BIAS])
    shared.set_weights([np.array([[1.0], [3.0]], dtype="float32")])
    bn = model.get_layer("bn")
    bn.set_weights([np.array([1.0, 2.0, 1.0], "float32"), np.array([0.0, 0.5, 0.0], "float32"),
                    np.array([0.5, 0.0, 1.0], "float32"), np.array([4.0, 1.0, 1.0], "float32")])
    return model


@pytest.fixture(scope="module")
def known_model():
    return build_known_model()


PROBE_X = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 0.0], [2.0, -1.0]], dtype="float32")


def numpy_outputs() -> dict[str, np.ndarray]:
    """Every layer's output on PROBE_X in inference mode, computed by hand."""
    dense = np.maximum(PROBE_X @ KERNEL + BIAS, 0.0)
    gamma, beta = np.array([1.0, 2.0, 1.0]), np.array([0.0, 0.5, 0.0])
    mean, var = np.array([0.5, 0.0, 1.0]), np.array([4.0, 1.0, 1.0])
    bn = (dense - mean) / np.sqrt(var + BN_EPSILON) * gamma + beta
    inner = bn @ INNER_KERNEL + INNER_BIAS
    shared_x = PROBE_X @ np.array([[1.0], [3.0]])
    return {
        "dense": dense, "drop": dense, "bn": bn, "halves": bn[:, :1], "halves:1": bn[:, 1:], "inner": inner,
        "inner/inner_dense": inner, "inner/empty": inner, "negate": -PROBE_X, "shared@1": shared_x,
        "shared@2": -shared_x, "add": shared_x * 0.0,
    }


def test_nested_layers_name_the_inside_of_nested_models_and_leave_out_inputs(known_model):
    names = [name for name, _ in nested_layers(known_model)]
    assert names == ["dense", "drop", "negate", "bn", "shared", "halves", "inner", "inner/inner_dense", "inner/empty",
                     "add"]
    assert [name for name, _ in nested_layers(known_model, "outer/")][6:8] == ["outer/inner", "outer/inner/inner_dense"]


def test_weight_records_match_numpy_for_every_weight(known_model):
    records = {(r["layer"], r["weight"]): r for r in weight_records(known_model)}
    assert list(records) == [
        ("dense", "kernel"), ("dense", "bias"), ("bn", "gamma"), ("bn", "beta"), ("bn", "moving_mean"),
        ("bn", "moving_variance"), ("shared", "kernel"),
        ("inner/inner_dense", "kernel"), ("inner/inner_dense", "bias"), ("inner/empty", "slot"),
    ]
    for key, values in {("dense", "kernel"): KERNEL, ("dense", "bias"): BIAS,
                        ("inner/inner_dense", "kernel"): INNER_KERNEL,
                        ("bn", "moving_variance"): np.array([4.0, 1.0, 1.0])}.items():
        record, flat = records[key], np.asarray(values, dtype="float64").reshape(-1)
        assert record["mean"] == pytest.approx(flat.mean(), rel=1e-9, abs=1e-12), key
        assert record["std"] == pytest.approx(flat.std(), rel=1e-9), key
        assert record["norm"] == pytest.approx(np.linalg.norm(flat), rel=1e-9), key
        assert (record["min"], record["max"], record["count"]) == (flat.min(), flat.max(), flat.size), key
        assert record["zero_frac"] == np.count_nonzero(flat == 0) / flat.size, key
        assert sum(record["histogram"]["counts"]) == flat.size
    assert records[("bn", "moving_mean")]["norm"] == pytest.approx(math.sqrt(0.5**2 + 1.0**2), rel=1e-9)
    assert [records[k]["trainable"] for k in (("dense", "kernel"), ("bn", "gamma"), ("bn", "moving_mean"))] == [
        True, True, False]
    assert records[("inner/empty", "slot")] == {"layer": "inner/empty", "weight": "slot", "trainable": True,
                                               "count": 0, "norm": 0.0}


def test_a_nested_models_weights_are_reported_once_under_its_layers(known_model):
    layers = [r["layer"] for r in weight_records(known_model)]
    assert "inner" not in layers
    assert layers.count("inner/inner_dense") == 2


def test_activation_records_are_inference_mode_outputs_matching_numpy(known_model):
    probe = ActivationProbe(known_model)
    assert probe.skipped == []
    records = probe.records(PROBE_X)
    expected = numpy_outputs()
    assert [r["layer"] for r in records] == ["dense", "drop", "negate", "bn", "shared@1", "shared@2", "halves",
                                             "halves:1", "inner", "add", "inner/inner_dense", "inner/empty"]
    for record in records:
        values = expected[record["layer"]].reshape(-1)
        assert record["count"] == values.size, record["layer"]
        assert record["mean"] == pytest.approx(values.mean(), rel=1e-5, abs=1e-6), record["layer"]
        assert record["std"] == pytest.approx(values.std(), rel=1e-5, abs=1e-6), record["layer"]
        assert record["min"] == pytest.approx(values.min(), rel=1e-5, abs=1e-6), record["layer"]
        assert record["max"] == pytest.approx(values.max(), rel=1e-5, abs=1e-6), record["layer"]
        assert record["zero_frac"] == np.count_nonzero(values == 0) / values.size, record["layer"]


def test_a_subclassed_model_is_refused_with_how_to_fix_it():
    with pytest.raises(ValueError) as raised:
        ActivationProbe(Doubler(name="doubler"))
    message = str(raised.value)
    assert message.startswith("per-layer activations need a Sequential or functional model: Doubler 'doubler' is a "
                              "subclassed model, whose layers have no symbolic outputs (")
    assert "Build it with keras.Sequential or the functional API" in message
    assert message.endswith("weight statistics are recorded anyway")


@pytest.mark.parametrize("unbuild", ["pop", "add"])
def test_a_sequential_model_left_without_inputs_is_refused_with_keras_reason_and_how_to_build_it(unbuild):
    # A name long enough that Keras's reason is cut at 160 characters (a message stays one readable line).
    name = "classifier_" + "x" * 170
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="a"), keras.layers.Dense(2, name="b")],
                             name=name)
    if unbuild == "pop":
        model.pop(rebuild=False)
    else:
        model.add(keras.layers.Dense(3, name="late"), rebuild=False)
    with pytest.raises(ValueError) as raised:
        ActivationProbe(model)
    try:  # Keras's own words, which differ by backend
        model.inputs[0]
    except (ValueError, AttributeError, TypeError) as exc:
        reason = str(exc)[:160]
    if keras.backend.backend() == "tensorflow":
        assert reason == f"Sequential model '{name}' has no defined inputs yet."[:160]
    assert str(raised.value) == (
        f"per-layer activations need a built model: Sequential {name!r} has no inputs yet ({reason}). Build it first "
        "(model.build(input_shape), or start it with keras.Input) to record them; weight statistics are recorded "
        "anyway")
    model.build((None, 2))
    assert [r["layer"] for r in ActivationProbe(model).records(np.ones((1, 2), dtype="float32"))] == (
        ["a"] if unbuild == "pop" else ["a", "b", "late"])


def test_a_nested_subclassed_model_is_skipped_with_why_and_its_output_still_probed():
    x = keras.Input((2,), name="x")
    h = keras.layers.Dense(2, name="before")(x)
    model = keras.Model(x, Doubler(name="doubler")(h))
    probe = ActivationProbe(model)
    assert [name for name, _ in probe.skipped] == ["doubler/*"]
    assert probe.skipped[0][1].startswith("per-layer activations need a Sequential or functional model: Doubler "
                                          "'doubler' is a subclassed model")
    assert "(its layers are called by its own Python code)" in probe.skipped[0][1]
    assert [r["layer"] for r in probe.records(np.ones((3, 2), dtype="float32"))] == ["before", "doubler"]


def test_a_nested_model_with_two_inputs_is_probed_on_both():
    a, b = keras.Input((2,), name="a"), keras.Input((2,), name="b")
    pair = keras.Model([a, b], keras.layers.Subtract(name="diff")([a, b]), name="pair")
    x = keras.Input((2,), name="x")
    model = keras.Model(x, pair([keras.layers.Lambda(lambda t: t * 3.0, name="triple")(x), x]))
    probe = ActivationProbe(model)
    records = {r["layer"]: r for r in probe.records(np.full((2, 2), 1.5, dtype="float32"))}
    assert list(records) == ["triple", "pair", "pair/diff"]
    assert records["pair/diff"]["mean"] == pytest.approx(3.0) and records["pair/diff"]["count"] == 4


def test_a_base_model_reused_elsewhere_is_probed_in_this_graph_only():
    base = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="base_dense")], name="base")
    x = keras.Input((2,), name="x")
    model = keras.Model(x, base(x), name="finetune")
    other_x = keras.Input((2,))
    keras.Model(other_x, base(keras.layers.Dense(2, name="pre")(other_x)))  # base's second use, in another model
    probe = ActivationProbe(model)
    assert [r["layer"] for r in probe.records(np.ones((1, 2), dtype="float32"))] == ["base", "base/base_dense"]


def test_a_sequential_model_built_without_an_input_is_probed():
    model = keras.Sequential([keras.layers.Dense(2, name="one"), keras.layers.Dense(1, name="two")], name="seq")
    model.build((None, 3))
    probe = ActivationProbe(model, prefix="run/")
    records = probe.records(np.ones((4, 3), dtype="float32"))
    assert [(r["layer"], r["count"]) for r in records] == [("run/one", 8), ("run/two", 4)]
