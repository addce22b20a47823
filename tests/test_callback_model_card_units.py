"""The model card on tiny models built directly (no fit()): summary text, layer table, config, the DOT graph, the
plot_model PNG and write_model_card into a real RunWriter."""

from __future__ import annotations

import json
import os
import sys
import time

import keras
import pytest

from kerascope.callbacks._model_card import (
    SUMMARY_WIDTH,
    graph_dot,
    json_config,
    layer_table,
    plot_model_png,
    summary_text,
    write_model_card,
)
from kerascope.monitor import RunWriter
from kerascope.monitor import format as fmt

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# keras.utils.plot_model's options that graph.png promises: shapes, names, trainable flags, nested models expanded.
PLOT_OPTIONS = {"show_shapes": True, "show_layer_names": True, "show_trainable": True, "expand_nested": True}


def two_dense(name: str = "tiny") -> keras.Model:
    inputs = keras.Input((3,), name="x")
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden), name=name)


def frozen_block_model() -> keras.Model:
    """A functional model with a frozen nested model whose one output is its last layer."""
    block_input = keras.Input((3,), name="base_in")
    base = keras.Model(block_input, keras.layers.Dense(2, name="embed")(block_input), name="base")
    base.trainable = False
    inputs = keras.Input((3,), name="img")
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(base(inputs)), name="outer")


def two_output_model() -> keras.Model:
    """A nested model with two outputs feeding a Concatenate; a frozen Dropout (frozen, but no weights); a model
    name that needs DOT escaping."""
    pair_input = keras.Input((3,), name="pair_in")
    pair = keras.Model(
        pair_input,
        [keras.layers.Dense(2, name="left")(pair_input), keras.layers.Dense(3, name="right")(pair_input)],
        name="pair",
    )
    inputs = keras.Input((3,), name="x")
    left, right = pair(inputs)
    merged = keras.layers.Concatenate(name="merge")([left, right])
    dropout = keras.layers.Dropout(0.5, name="drop")
    dropout.trainable = False
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(dropout(merged)), name='q"b\\s')


class Unbuilt(keras.Model):
    """A subclassed model never called: its layers have no weights and no output."""

    def __init__(self) -> None:
        super().__init__(name="unbuilt")
        self.dense = keras.layers.Dense(2, name="d1")

    def call(self, inputs):
        return self.dense(inputs)


# -- summary_text ------------------------------------------------------------------------------------------------


def test_summary_is_the_keras_summary_at_full_width_with_trainable_column_and_nested_layers():
    text = summary_text(frozen_block_model())
    lines = text.split("\n")
    assert lines[0] == 'Model: "outer"'
    table = [line for line in lines if line[:1] in "┏┃┡│├└" and line]
    # Not cropped to the 80 columns rich assumes without a terminal.
    assert {len(line) for line in table} == {SUMMARY_WIDTH}
    assert lines[2].split("┃")[1:-1] == [
        " Layer (type)" + " " * 34, " Output Shape" + " " * 24, " " * 12 + "Param # ", " Trainable "]
    rows = [line for line in lines if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == [
        "img (InputLayer)", "base (Functional)", "└ base_in (InputLayer)", "└ embed (Dense)", "head (Dense)"]
    assert [row.split("│")[4].strip() for row in rows] == ["-", "N", "-", "N", "Y"]
    assert lines[-4:] == [
        " Total params: 11 (44.00 B)", " Trainable params: 3 (12.00 B)", " Non-trainable params: 8 (32.00 B)", ""]


def test_summary_leaves_an_unset_columns_variable_unset(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    summary_text(two_dense())
    assert "COLUMNS" not in os.environ


def test_summary_restores_a_columns_variable_that_was_set(monkeypatch):
    monkeypatch.setenv("COLUMNS", "77")
    text = summary_text(two_dense())
    assert os.environ["COLUMNS"] == "77"
    assert text.split("\n")[1] == "┏" + "━" * 47 + "┳" + "━" * 37 + "┳" + "━" * 20 + "┳" + "━" * 11 + "┓"


# -- layer_table -------------------------------------------------------------------------------------------------


def test_layer_table_lists_nested_layers_with_parent_shape_params_and_trainable():
    assert layer_table(frozen_block_model()) == [
        {"name": "base", "path": "base", "class": "Functional", "output_shape": [None, 2], "params": 8,
         "trainable": False, "parent": None},
        {"name": "embed", "path": "base/embed", "class": "Dense", "output_shape": [None, 2], "params": 8,
         "trainable": False, "parent": "base"},
        {"name": "head", "path": "head", "class": "Dense", "output_shape": [None, 1], "params": 3,
         "trainable": True, "parent": None},
    ]


def test_a_layer_with_two_outputs_has_a_list_of_shapes():
    rows = {row["path"]: row for row in layer_table(two_output_model())}
    assert rows["pair"]["output_shape"] == [[None, 2], [None, 3]]
    assert rows["pair"]["params"] == 20
    assert (rows["drop"]["trainable"], rows["drop"]["params"]) == (False, 0)


def test_an_unbuilt_layer_has_no_shape_and_no_params():
    assert layer_table(Unbuilt()) == [
        {"name": "d1", "path": "d1", "class": "Dense", "output_shape": None, "params": 0, "trainable": True,
         "parent": None}
    ]


# -- json_config -------------------------------------------------------------------------------------------------


def test_a_functional_models_config_is_returned_as_is():
    model = two_dense()
    config = json_config(model)
    assert config == model.get_config()
    assert [layer["name"] for layer in config["layers"]] == ["x", "hidden", "out"]


class ConfigOf(keras.Model):
    """A subclassed model whose get_config returns a given value (or raises it)."""

    def __init__(self, config) -> None:
        super().__init__(name="config_of")
        self.config = config

    def get_config(self):
        if isinstance(self.config, Exception):
            raise self.config
        return self.config


def test_a_config_with_nan_is_still_json():
    config = json_config(ConfigOf({"name": "x", "threshold": float("nan")}))
    assert json.dumps(config) == '{"name": "x", "threshold": NaN}'


@pytest.mark.parametrize(
    "config",
    [{"optimizer": object()}, [1, 2], "text", NotImplementedError("no config"), ValueError("bad"), TypeError("bad")],
    ids=["not-json", "a-list", "a-string", "not-implemented", "value-error", "type-error"],
)
def test_a_config_that_is_not_a_json_object_is_none(config):
    assert json_config(ConfigOf(config)) is None


# -- graph_dot ---------------------------------------------------------------------------------------------------

HEADER = '  rankdir=TB;\n  node [shape=box, fontname=Helvetica];\n'


def test_dot_of_a_functional_model():
    assert graph_dot(two_dense()) == (
        'digraph "tiny" {\n' + HEADER
        + '  "x" [label="x\\nInputLayer\\n[None, 3]"];\n'
        '  "hidden" [label="hidden\\nDense\\n[None, 4]"];\n'
        '  "out" [label="out\\nDense\\n[None, 1]"];\n'
        '  "x" -> "hidden";\n'
        '  "hidden" -> "out";\n'
        "}\n"
    )


def test_dot_of_a_frozen_nested_model_is_a_cluster_with_dashed_weights():
    assert graph_dot(frozen_block_model()) == (
        'digraph "outer" {\n' + HEADER
        + '  "img" [label="img\\nInputLayer\\n[None, 3]"];\n'
        '  subgraph "cluster_base" {\n'
        '    label="base (Functional)";\n'
        '    "base/base_in" [label="base_in\\nInputLayer\\n[None, 3]"];\n'
        '    "base/embed" [label="embed\\nDense\\n[None, 2]", style=dashed];\n'
        '    "base/base_in" -> "base/embed";\n'
        "  }\n"
        '  "head" [label="head\\nDense\\n[None, 1]"];\n'
        '  "img" -> "base/base_in";\n'
        '  "base/embed" -> "head";\n'
        "}\n"
    )


def test_dot_wires_both_outputs_of_a_nested_model_and_escapes_the_name():
    assert graph_dot(two_output_model()) == (
        'digraph "q\\"b\\\\s" {\n' + HEADER
        + '  "x" [label="x\\nInputLayer\\n[None, 3]"];\n'
        '  subgraph "cluster_pair" {\n'
        '    label="pair (Functional)";\n'
        '    "pair/pair_in" [label="pair_in\\nInputLayer\\n[None, 3]"];\n'
        '    "pair/left" [label="left\\nDense\\n[None, 2]"];\n'
        '    "pair/right" [label="right\\nDense\\n[None, 3]"];\n'
        '    "pair/pair_in" -> "pair/left";\n'
        '    "pair/pair_in" -> "pair/right";\n'
        "  }\n"
        '  "merge" [label="merge\\nConcatenate\\n[None, 5]"];\n'
        # Frozen but without weights: nothing to draw as frozen.
        '  "drop" [label="drop\\nDropout\\n[None, 5]"];\n'
        '  "out" [label="out\\nDense\\n[None, 1]"];\n'
        '  "x" -> "pair/pair_in";\n'
        '  "pair/left" -> "merge";\n'
        '  "pair/right" -> "merge";\n'
        '  "merge" -> "drop";\n'
        '  "drop" -> "out";\n'
        "}\n"
    )


def test_dot_of_a_sequential_model_wires_consecutive_layers_through_a_nested_model():
    block_input = keras.Input((4,), name="b_in")
    block = keras.Model(block_input, keras.layers.Dense(4, name="inside")(block_input), name="block")
    block.trainable = False
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, name="first"), block, keras.layers.Dense(1, name="last")],
        name="stack",
    )
    assert graph_dot(model) == (
        'digraph "stack" {\n' + HEADER
        + '  "first" [label="first\\nDense\\n[None, 4]"];\n'
        '  subgraph "cluster_block" {\n'
        '    label="block (Functional)";\n'
        '    "block/b_in" [label="b_in\\nInputLayer\\n[None, 4]"];\n'
        '    "block/inside" [label="inside\\nDense\\n[None, 4]", style=dashed];\n'
        '    "block/b_in" -> "block/inside";\n'
        "  }\n"
        '  "last" [label="last\\nDense\\n[None, 1]"];\n'
        '  "first" -> "block/b_in";\n'
        '  "block/inside" -> "last";\n'
        "}\n"
    )


def test_dot_enters_a_nested_sequential_model_at_its_first_layer_and_leaves_at_its_last():
    block_input = keras.Input((2,), name="blk_in")
    block = keras.Model(block_input, keras.layers.Dense(2, name="blk_dense")(block_input), name="blk")
    inner = keras.Sequential([block, keras.layers.Dense(3, name="s2"), keras.layers.Dense(2, name="s3")], name="inner")
    inputs = keras.Input((2,), name="f_in")
    model = keras.Model(inputs, keras.layers.Dense(1, name="f_out")(inner(inputs)), name="fun")
    assert graph_dot(model) == (
        'digraph "fun" {\n' + HEADER
        + '  "f_in" [label="f_in\\nInputLayer\\n[None, 2]"];\n'
        '  subgraph "cluster_inner" {\n'
        '    label="inner (Sequential)";\n'
        '    subgraph "cluster_inner/blk" {\n'
        '      label="blk (Functional)";\n'
        '      "inner/blk/blk_in" [label="blk_in\\nInputLayer\\n[None, 2]"];\n'
        '      "inner/blk/blk_dense" [label="blk_dense\\nDense\\n[None, 2]"];\n'
        '      "inner/blk/blk_in" -> "inner/blk/blk_dense";\n'
        "    }\n"
        '    "inner/s2" [label="s2\\nDense\\n[None, 3]"];\n'
        '    "inner/s3" [label="s3\\nDense\\n[None, 2]"];\n'
        '    "inner/blk/blk_dense" -> "inner/s2";\n'
        '    "inner/s2" -> "inner/s3";\n'
        "  }\n"
        '  "f_out" [label="f_out\\nDense\\n[None, 1]"];\n'
        # Into the nested Sequential's first layer, itself a model: into that model's input.
        '  "f_in" -> "inner/blk/blk_in";\n'
        '  "inner/s3" -> "f_out";\n'
        "}\n"
    )


class TwoDense(keras.Model):
    """A subclassed model with two layers: no layer graph of its own."""

    def __init__(self) -> None:
        super().__init__(name="two")
        self.first = keras.layers.Dense(3, name="ta")
        self.second = keras.layers.Dense(2, name="tb")

    def call(self, inputs):
        return self.second(self.first(inputs))


def test_a_nested_subclassed_model_is_entered_at_every_layer_and_left_at_its_last():
    inputs = keras.Input((2,), name="s_in")
    model = keras.Model(inputs, keras.layers.Dense(1, name="s_out")(TwoDense()(inputs)), name="around")
    assert graph_dot(model) == (
        'digraph "around" {\n' + HEADER
        + '  "s_in" [label="s_in\\nInputLayer\\n[None, 2]"];\n'
        '  subgraph "cluster_two" {\n'
        '    label="two (TwoDense)";\n'
        '    "two/ta" [label="ta\\nDense"];\n'
        '    "two/tb" [label="tb\\nDense"];\n'
        "  }\n"
        '  "s_out" [label="s_out\\nDense\\n[None, 1]"];\n'
        '  "s_in" -> "two/ta";\n'
        '  "s_in" -> "two/tb";\n'
        '  "two/tb" -> "s_out";\n'
        "}\n"
    )


def test_a_layer_shared_with_another_model_is_wired_only_within_this_one():
    shared = keras.layers.Dense(2, name="shared")
    other_input = keras.Input((2,), name="other_in")
    keras.Model(other_input, shared(other_input), name="other")
    inputs = keras.Input((2,), name="mine_in")
    assert graph_dot(keras.Model(inputs, shared(inputs), name="mine")) == (
        'digraph "mine" {\n' + HEADER
        + '  "mine_in" [label="mine_in\\nInputLayer\\n[None, 2]"];\n'
        # The label's shape is the layer's first call's (in the other model).
        '  "shared" [label="shared\\nDense\\n[None, 2]"];\n'
        '  "mine_in" -> "shared";\n'
        "}\n"
    )


def test_a_tensor_used_twice_by_one_layer_is_one_edge():
    inputs = keras.Input((2,), name="c_in")
    hidden = keras.layers.Dense(2, name="h")(inputs)
    model = keras.Model(inputs, keras.layers.Add(name="twice")([hidden, hidden]), name="c")
    assert graph_dot(model).endswith('  "c_in" -> "h";\n  "h" -> "twice";\n}\n')


class Holder(keras.Model):
    """A subclassed model holding a Sequential that has no layers yet and a Dense never called."""

    def __init__(self) -> None:
        super().__init__(name="holder")
        self.pending = keras.Sequential(name="pending")
        self.dense = keras.layers.Dense(1, name="dense")

    def call(self, inputs):
        return self.dense(inputs)


def test_a_subclassed_model_lists_its_layers_and_an_empty_sequential_is_an_empty_cluster():
    assert graph_dot(Holder()) == (
        'digraph "holder" {\n' + HEADER
        + '  subgraph "cluster_pending" {\n'
        '    label="pending (Sequential)";\n'
        "  }\n"
        '  "dense" [label="dense\\nDense"];\n'
        "}\n"
    )


class Hollow(keras.Model):
    """A layerless subclassed model used as a layer of a functional model."""

    def call(self, inputs):
        return inputs


def test_a_nested_model_without_layers_is_an_empty_cluster():
    inputs = keras.Input((2,), name="e_in")
    model = keras.Model(inputs, keras.layers.Dense(1, name="after")(Hollow(name="hollow")(inputs)), name="with_hollow")
    assert graph_dot(model) == (
        'digraph "with_hollow" {\n' + HEADER
        + '  "e_in" [label="e_in\\nInputLayer\\n[None, 2]"];\n'
        '  subgraph "cluster_hollow" {\n'
        '    label="hollow (Hollow)";\n'
        "  }\n"
        '  "after" [label="after\\nDense\\n[None, 1]"];\n'
        "}\n"
    )


class GraphlessModel:
    """A model-like object whose outputs are not Keras tensors: its layer graph cannot be walked."""

    def __init__(self, layers: list[keras.layers.Layer]) -> None:
        self.name = "graphless"
        self.layers = layers
        self.outputs = ["not a tensor"]


def test_a_model_whose_graph_cannot_be_walked_lists_every_nested_layer_unconnected():
    assert graph_dot(GraphlessModel(frozen_block_model().layers)) == (
        'digraph "graphless" {\n' + HEADER
        + '  "base" [label="base\\nFunctional"];\n'
        '  "base/embed" [label="base/embed\\nDense"];\n'
        '  "head" [label="head\\nDense"];\n'
        "}\n"
    )


# -- plot_model_png ----------------------------------------------------------------------------------------------


def test_the_png_is_plot_models_with_shapes_names_trainable_and_nested_models(tmp_path):
    model = frozen_block_model()
    path = str(tmp_path / "graph.png")
    assert plot_model_png(model, path) is None
    reference = str(tmp_path / "reference" / "graph.png")
    os.makedirs(os.path.dirname(reference))
    keras.utils.plot_model(model, to_file=reference, **PLOT_OPTIONS)
    with open(path, "rb") as written, open(reference, "rb") as expected:
        assert written.read() == expected.read()
    assert sorted(os.listdir(tmp_path)) == ["graph.png", "reference"]


def test_a_failing_plot_raises_and_leaves_no_file_behind(tmp_path):
    with pytest.raises(ValueError, match="not yet been built"):
        plot_model_png(Unbuilt(), str(tmp_path / "graph.png"))
    assert os.listdir(tmp_path) == []


def test_without_pydot_the_png_is_skipped_with_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pydot", None)  # `import pydot` raises ImportError
    assert plot_model_png(two_dense(), str(tmp_path / "graph.png")) == (
        "graph.png needs pydot and graphviz: pip install pydot; apt-get install graphviz (or brew install)"
    )
    assert os.listdir(tmp_path) == []


def test_without_graphviz_the_png_is_skipped_with_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert plot_model_png(two_dense(), str(tmp_path / "graph.png")) == (
        "graph.png needs graphviz's `dot` binary on PATH: apt-get install graphviz (or brew install graphviz)"
    )
    assert os.listdir(tmp_path) == []


# -- write_model_card --------------------------------------------------------------------------------------------


def read_text(run_dir: str, relpath: str) -> str:
    with open(os.path.join(run_dir, relpath), encoding="utf-8") as f:
        return f.read()


def layer_lines(run_dir: str) -> list[dict]:
    return [json.loads(line) for line in read_text(run_dir, fmt.LAYERS_FILE).splitlines()]


def test_the_model_card_writes_every_file_of_the_model_folder(tmp_path):
    model = frozen_block_model()
    writer = RunWriter(tmp_path, name="card")
    skipped: list[tuple[str, str]] = []
    before = time.time()
    write_model_card(writer, model, 2, lambda what, why: skipped.append((what, why)))
    after = time.time()
    writer.close()

    assert skipped == []
    [record] = layer_lines(writer.run_dir)
    assert record == {"phase": 2, "time": record["time"], "layers": layer_table(model)}
    assert before <= record["time"] <= after
    assert read_text(writer.run_dir, fmt.GRAPH_DOT_FILE) == graph_dot(model)
    assert read_text(writer.run_dir, fmt.SUMMARY_FILE) == summary_text(model)
    # The nested model's layer configs are nested deepest: they stay objects, not their repr.
    assert read_text(writer.run_dir, fmt.CONFIG_FILE) == json.dumps(model.get_config(), indent=1)
    reference = str(tmp_path / "reference.png")
    keras.utils.plot_model(model, to_file=reference, **PLOT_OPTIONS)
    with open(os.path.join(writer.run_dir, fmt.GRAPH_PNG_FILE), "rb") as written, open(reference, "rb") as expected:
        assert written.read() == expected.read()
    assert sorted(os.listdir(os.path.join(writer.run_dir, fmt.MODEL_DIR))) == [
        "config.json", "graph.dot", "graph.png", "layers.jsonl", "summary.txt"]


class Unsummarizable(keras.Model):
    """An unbuilt subclassed model whose summary() fails (as Keras's did for unbuilt models) and whose config holds
    an arbitrary object."""

    def __init__(self) -> None:
        super().__init__(name="unsummarizable")
        self.dense = keras.layers.Dense(2, name="d1")

    def call(self, inputs):
        return self.dense(inputs)

    def summary(self, *args, **kwargs):
        raise ValueError("This model has not yet been built.")

    def get_config(self):
        return {"loss": object()}


def test_what_cannot_be_written_is_skipped_with_the_reason_and_the_rest_is_written(tmp_path):
    model = Unsummarizable()
    writer = RunWriter(tmp_path, name="card")
    skipped: list[tuple[str, str]] = []
    write_model_card(writer, model, 0, lambda what, why: skipped.append((what, why)))
    writer.close()

    assert skipped == [
        ("summary", "model.summary() failed: This model has not yet been built."),
        ("config", "model.get_config() is not JSON-serializable (typical of subclassed models without get_config); "
                   "config.json is not written"),
        ("graph.png", "keras.utils.plot_model failed: This model has not yet been built. Build the model first by "
                      "calling `build()` or by calling the model on a batch of data."),
    ]
    assert sorted(os.listdir(os.path.join(writer.run_dir, fmt.MODEL_DIR))) == ["graph.dot", "layers.jsonl"]
    assert read_text(writer.run_dir, fmt.GRAPH_DOT_FILE) == graph_dot(model)
    assert [line["layers"] for line in layer_lines(writer.run_dir)] == [layer_table(model)]


def test_without_graphviz_the_png_is_skipped_and_the_rest_is_written(tmp_path, monkeypatch):
    model = two_dense()
    writer = RunWriter(tmp_path, name="card")
    monkeypatch.setenv("PATH", str(tmp_path))
    skipped: list[tuple[str, str]] = []
    write_model_card(writer, model, 1, lambda what, why: skipped.append((what, why)))
    writer.close()
    assert skipped == [("graph.png", "graph.png needs graphviz's `dot` binary on PATH: apt-get install graphviz "
                                     "(or brew install graphviz)")]
    assert sorted(os.listdir(os.path.join(writer.run_dir, fmt.MODEL_DIR))) == [
        "config.json", "graph.dot", "layers.jsonl", "summary.txt"]



def test_a_config_with_nan_is_written_with_jsons_nan(tmp_path):
    writer = RunWriter(tmp_path, name="card")
    skipped: list[tuple[str, str]] = []
    write_model_card(writer, ConfigOf({"name": "x", "threshold": float("nan")}), 0,
                     lambda what, why: skipped.append((what, why)))
    writer.close()
    assert read_text(writer.run_dir, fmt.CONFIG_FILE) == '{\n "name": "x",\n "threshold": NaN\n}'
    assert [what for what, _ in skipped] == ["graph.png"]  # never called, so never built
