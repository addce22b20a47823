"""Which process writes the run under TensorFlow: the default strategy's, and a model's own strategy whether or not
its scope is active. Multi-worker training with real processes is in test_callback_distributed.py."""

from __future__ import annotations

import keras
import pytest
import tensorflow as tf

from kerascope.callbacks._distributed import is_chief, process_index

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's distribution strategies")


class NonChiefStrategy(tf.distribute.OneDeviceStrategy):
    """A one-device strategy that, like a multi-worker strategy's non-chief worker, does not checkpoint."""

    def __init__(self) -> None:
        extended_class = type(tf.distribute.OneDeviceStrategy("/cpu:0").extended)

        class NotCheckpointing(extended_class):
            @property
            def should_checkpoint(self) -> bool:
                return False

        tf.distribute.Strategy.__init__(self, NotCheckpointing(self, "/cpu:0"))


def dense_model() -> keras.Model:
    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


def test_without_a_strategy_this_process_is_the_chief():
    assert (process_index(), is_chief()) == (0, True)
    model = dense_model()
    assert (process_index(model), is_chief(model)) == (0, True)


def test_a_checkpointing_strategys_model_is_the_chiefs():
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        model = dense_model()
        assert (process_index(), process_index(model), is_chief(model)) == (0, 0, True)


def test_a_model_built_under_a_non_checkpointing_strategy_is_not_the_chiefs_even_outside_its_scope():
    strategy = NonChiefStrategy()
    with strategy.scope():
        model = dense_model()
        assert (process_index(), is_chief()) == (1, False)
    assert model.distribute_strategy is strategy
    # A custom training loop may drive the callbacks outside the scope: the model's strategy still tells.
    assert (process_index(model), is_chief(model)) == (1, False)
    assert (process_index(), is_chief()) == (0, True)


class StrategyWithoutCheckpointNotion:
    """A strategy-like object whose `extended` says nothing about checkpointing."""

    extended = object()


class ModelOn:
    """A stand-in model carrying a given distribute_strategy."""

    def __init__(self, strategy: object) -> None:
        self.distribute_strategy = strategy


def test_a_strategy_that_says_nothing_about_checkpointing_counts_as_the_chiefs():
    assert (process_index(ModelOn(StrategyWithoutCheckpointNotion())), is_chief(ModelOn(NonChiefStrategy()))) == (
        0, False)


def test_a_model_without_a_strategy_of_its_own_goes_by_the_active_one():
    with NonChiefStrategy().scope():
        assert (process_index(ModelOn(None)), process_index(object())) == (1, 1)
