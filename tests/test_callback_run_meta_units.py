"""What run.json records about the environment, the model, the optimizer and the options, and which KerasTuner trial
a fit() belongs to: on real Keras models, optimizers, LiveMonitor instances and KerasTuner objects, without training.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys

import keras
import keras_tuner
import numpy as np
import pytest

from kerascope import LiveMonitor
from kerascope.callbacks._run_meta import (
    OPTION_NAMES,
    _itemsize,
    environment,
    model_info,
    optimizer_info,
    parameter_counts,
    recorded_options,
)
from kerascope.callbacks._tuner import Trial, current_trial, new_group_id

# -- environment, parameters, size ----------------------------------------------------------------------------------


def test_environment_names_keras_its_backend_and_python():
    found = environment()
    assert found == {"keras_version": keras.__version__, "backend": os.environ["KERAS_BACKEND"],
                     "python_version": "{}.{}.{}".format(*sys.version_info[:3])}
    assert found["python_version"] == platform.python_version()


@pytest.mark.parametrize(("dtype", "size"), [
    ("float32", 4), ("float16", 2), ("bfloat16", 2), ("int8", 1), ("float64", 8), ("bool", 1), ("uint16", 2),
    # Not numpy dtypes: the bit width is the first number of the name, in whole bytes.
    ("posit24_es2", 3), ("float6_e9m9", 1), ("int12x", 2), ("quad128_e15", 16), ("opaque", 4),
])
def test_the_bytes_of_one_value_of_a_dtype(dtype, size):
    assert _itemsize(dtype) == size


@pytest.fixture
def mixed_model() -> keras.Model:
    """dense: 12 + 3 float32; norm: 3 + 3 trainable and 3 + 3 moving statistics, float32; half: 6 + 2 float16;
    brain: 2 + 1 bfloat16; scale: one scalar float32 weight that is not trained."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense"),
                              keras.layers.BatchNormalization(name="norm"),
                              keras.layers.Dense(2, dtype="float16", name="half"),
                              keras.layers.Dense(1, dtype="bfloat16", name="brain"),
                              Scale(name="scale")], name="mixed")
    return model


class Scale(keras.layers.Layer):
    """Multiplies by one frozen scalar weight (shape ())."""

    def build(self, input_shape: tuple) -> None:
        self.factor = self.add_weight(shape=(), initializer="ones", trainable=False, name="factor")

    def call(self, inputs):
        return inputs * keras.ops.cast(self.factor, inputs.dtype)


def test_parameter_counts_follow_frozen_layers(mixed_model):
    assert parameter_counts(mixed_model) == (15 + 6 + 8 + 3, 6 + 1)
    mixed_model.get_layer("dense").trainable = False
    assert parameter_counts(mixed_model) == (6 + 8 + 3, 15 + 6 + 1)
    found = parameter_counts(mixed_model)
    assert type(found[0]) is int and type(found[1]) is int


def test_model_info_counts_and_sizes_each_weight_in_its_own_dtype(mixed_model):
    found = model_info(mixed_model)
    assert found == {"name": "mixed", "class": "Sequential", "total_params": 39, "trainable_params": 32,
                     "non_trainable_params": 7, "size_bytes": (15 + 12 + 1) * 4 + 8 * 2 + 3 * 2}
    assert [type(found[key]) for key in ("total_params", "size_bytes")] == [int, int]
    assert list(found) == ["name", "class", "total_params", "trainable_params", "non_trainable_params",
                           "size_bytes"]


def test_model_info_of_a_functional_model_with_a_frozen_layer():
    x = keras.Input((2,))
    frozen = keras.layers.Dense(5, name="frozen")
    model = keras.Model(x, keras.layers.Dense(1)(frozen(x)), name="func")
    frozen.trainable = False
    assert model_info(model) == {"name": "func", "class": "Functional", "total_params": 15 + 6,
                                 "trainable_params": 6, "non_trainable_params": 15, "size_bytes": 21 * 4}


# -- optimizer ------------------------------------------------------------------------------------------------------


class ConfigLess(keras.optimizers.SGD):
    """A custom optimizer whose get_config does not work."""

    def get_config(self):
        raise NotImplementedError("no config")


def test_optimizer_info_is_the_class_and_its_config_as_json():
    assert optimizer_info(None) is None
    found = optimizer_info(keras.optimizers.Adam(learning_rate=0.01, beta_1=0.8, name="tuned_adam"))
    assert list(found) == ["class", "config"] and found["class"] == "Adam"
    config = found["config"]
    assert (config["name"], config["beta_1"], config["learning_rate"]) == ("tuned_adam", 0.8, pytest.approx(0.01))
    assert json.loads(json.dumps(config, allow_nan=False)) == config


def test_a_schedule_is_recorded_as_its_own_config():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5)
    found = optimizer_info(keras.optimizers.SGD(schedule))
    lr = found["config"]["learning_rate"]
    assert (found["class"], lr["class_name"], lr["config"]["initial_learning_rate"], lr["config"]["decay_steps"]) == (
        "SGD", "ExponentialDecay", 0.1, 100)


def test_an_optimizer_whose_get_config_fails_still_has_its_class_recorded():
    assert optimizer_info(ConfigLess(0.1)) == {"class": "ConfigLess",
                                               "config": {"error": "get_config() failed: NotImplementedError"}}


# -- options --------------------------------------------------------------------------------------------------------


def test_recorded_options_are_every_option_in_effect_and_the_activation_samples(tmp_path):
    logdir = str(tmp_path / "runs")
    live = LiveMonitor(logdir, update_freq=4, activation_data=np.zeros((7, 3), "float32"), activation_freq=2,
                       weight_freq=0, gradient_freq=5, divergence_factor=None, checkpoint="best",
                       monitor="val_accuracy", mode="max", metric_directions={"peak": "max"}, system_freq=0,
                       flush_interval=1.5, strict=True, resume="auto")
    found = recorded_options(live)
    assert found == {"logdir": logdir, "update_freq": 4, "activation_freq": 2, "weight_freq": 0, "gradient_freq": 5,
                     "divergence_factor": None, "checkpoint": "best", "monitor": "val_accuracy", "mode": "max",
                     "metric_directions": {"peak": "max"}, "system_freq": 0, "flush_interval": 1.5, "strict": True,
                     "resume": "auto", "activation_samples": 7}
    assert list(found) == [*OPTION_NAMES, "activation_samples"]


def test_recorded_defaults_and_activation_data_without_a_shape(tmp_path):
    live = LiveMonitor(str(tmp_path), activation_data=[[0.0, 1.0]])
    found = recorded_options(live)
    assert found == {"logdir": str(tmp_path), "update_freq": "batch", "activation_freq": 1, "weight_freq": 1,
                     "gradient_freq": 50, "divergence_factor": 10.0, "checkpoint": None, "monitor": "val_loss",
                     "mode": "auto", "metric_directions": {}, "system_freq": 2.0, "flush_interval": 0.5,
                     "strict": False, "resume": None, "activation_samples": None}


@pytest.mark.parametrize(("inputs", "samples"), [
    ({"image": np.zeros((5, 4), "float32"), "meta": np.zeros((5, 2), "float32")}, 5),
    ([np.zeros((6, 2), "float32"), np.zeros((6, 1), "float32")], 6),
    ((np.zeros((3, 2), "float32"),), 3),
])
def test_the_activation_samples_of_a_multi_input_model(tmp_path, inputs, samples):
    assert recorded_options(LiveMonitor(str(tmp_path), activation_data=inputs))["activation_samples"] == samples


def test_a_logdir_url_is_recorded_without_its_keys():
    live = LiveMonitor("s3://AKIAKEY:s3cret@bucket:9000/team/runs?X-Amz-Signature=abc")
    found = recorded_options(live)
    assert (found["logdir"], found["flush_interval"]) == ("s3://bucket:9000/team/runs", 5.0)
    assert json.loads(json.dumps(found)) == found


def test_numpy_options_are_recorded_as_json_values(tmp_path):
    live = LiveMonitor(str(tmp_path), gradient_freq=np.int64(3), system_freq=np.float32(0.5))
    found = recorded_options(live)
    assert (found["gradient_freq"], found["system_freq"]) == (3, 0.5)
    assert (type(found["gradient_freq"]), type(found["system_freq"])) == (int, float)


# -- KerasTuner ------------------------------------------------------------------------------------------------------


def hyperparameters() -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    hp.Int("units", 8, 64, default=32)
    hp.Float("lr", 1e-3, 1e-1, default=0.01)
    return hp


def fit_deep(depth: int, max_depth: int | None = None) -> Trial | None:
    """current_trial() `depth` frames below the caller, as from fit() and Keras's callback plumbing."""
    if depth > 0:
        return fit_deep(depth - 1, max_depth)
    return current_trial() if max_depth is None else current_trial(max_depth)


def _build_and_fit_model(self, trial, depth: int = 5, max_depth: int | None = None) -> Trial | None:  # noqa: ANN001
    """KerasTuner's method: the tuner and the trial are locals of the frame that calls fit()."""
    return fit_deep(depth, max_depth)


@pytest.fixture(scope="module")
def tuner(tmp_path_factory):
    def build(hp: keras_tuner.HyperParameters) -> keras.Model:
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(hp.Int("units", 1, 2))])
        model.compile("sgd", "mse")
        return model

    return keras_tuner.RandomSearch(build, objective="loss", max_trials=1, directory=str(tmp_path_factory.mktemp("kt")),
                                    project_name="sweep", overwrite=True)


def test_outside_a_search_there_is_no_trial():
    assert current_trial() is None
    assert fit_deep(3, max_depth=10_000) is None  # the stack ends first


def test_the_trial_and_tuner_of_the_frame_that_called_fit(tuner):
    trial = keras_tuner.engine.trial.Trial(hyperparameters(), trial_id="07")
    found = _build_and_fit_model(tuner, trial)
    assert found == Trial("07", {"units": 32, "lr": 0.01}, tuner) and found.tuner is tuner
    found.hparams["units"] = 1  # a copy: the trial's values stay
    assert trial.hyperparameters.values == {"units": 32, "lr": 0.01}


def test_the_trial_is_found_within_max_depth_frames_only(tuner):
    trial = keras_tuner.engine.trial.Trial(hyperparameters(), trial_id="1")
    assert _build_and_fit_model(tuner, trial, depth=40) is not None
    assert _build_and_fit_model(tuner, trial, depth=80) is None
    assert _build_and_fit_model(tuner, trial, depth=10, max_depth=20) is not None
    assert _build_and_fit_model(tuner, trial, depth=10, max_depth=3) is None


def test_locals_named_trial_that_are_not_kerastuner_trials_are_passed_over(tuner):
    class UserTrial:
        trial_id = "mine"

    def users_loop() -> Trial | None:
        trial = UserTrial()  # noqa: F841 (a frame local is what is searched)
        return inner()

    def inner() -> Trial | None:
        trial = hyperparameters()  # noqa: F841 (KerasTuner's, but no trial_id)
        return current_trial()

    real = keras_tuner.engine.trial.Trial(hyperparameters(), trial_id="3")

    def _run_trial(self, trial):  # noqa: ANN001
        return users_loop()

    assert _run_trial(tuner, real) == Trial("3", {"units": 32, "lr": 0.01}, tuner)
    assert users_loop() is None


def test_a_trial_without_hyperparameters_or_a_string_id_and_a_frame_without_a_tuner():
    trial = keras_tuner.engine.trial.Trial(hyperparameters(), trial_id=7)
    trial.hyperparameters = None

    def run(trial):  # noqa: ANN001
        return current_trial()

    found = run(trial)
    assert found == Trial("7", {}, None) and type(found.trial_id) is str
    del trial.hyperparameters
    assert run(trial) == Trial("7", {}, None)


def test_a_group_id_is_the_project_name_and_a_random_suffix(tuner):
    first, second = new_group_id(tuner), new_group_id(tuner)
    assert re.fullmatch(r"sweep-[0-9a-f]{6}", first) and re.fullmatch(r"sweep-[0-9a-f]{6}", second)
    assert first != second
    assert re.fullmatch(r"search-[0-9a-f]{6}", new_group_id(None))
    tuner_without_name = keras_tuner.Tuner.__new__(keras_tuner.RandomSearch)
    assert re.fullmatch(r"search-[0-9a-f]{6}", new_group_id(tuner_without_name))
