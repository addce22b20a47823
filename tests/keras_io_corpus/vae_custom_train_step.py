"""keras.io "Variational AutoEncoder": a subclassed model with a custom train_step that tracks total, reconstruction
and KL losses with Mean metrics. The train_step is written per backend, as the keras.io guides on custom train steps
do (GradientTape, torch autograd, a stateless JAX step)."""

import keras
from keras import ops

from kerascope import LiveMonitor

from . import MONITOR, images


class Sampling(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


class VAE(keras.Model):
    def __init__(self, features, latent=2, **kwargs):
        super().__init__(**kwargs)
        self.encoder = keras.Sequential([keras.Input((features,)), keras.layers.Dense(16, activation="relu"),
                                         keras.layers.Dense(2 * latent)], name="encoder")
        self.decoder = keras.Sequential([keras.Input((latent,)), keras.layers.Dense(16, activation="relu"),
                                         keras.layers.Dense(features, activation="sigmoid")], name="decoder")
        self.sampling = Sampling()
        self.latent = latent
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def call(self, x, training=False):
        h = self.encoder(x, training=training)
        z_mean, z_log_var = h[:, : self.latent], h[:, self.latent :]
        return z_mean, z_log_var, self.decoder(self.sampling([z_mean, z_log_var]))

    def losses_of(self, x, outputs):
        z_mean, z_log_var, reconstruction = outputs
        pixel_losses = keras.losses.binary_crossentropy(x[..., None], reconstruction[..., None])
        reconstruction_loss = ops.mean(ops.sum(pixel_losses, axis=1))
        kl_loss = ops.mean(ops.sum(-0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var)), axis=1))
        return reconstruction_loss + kl_loss, reconstruction_loss, kl_loss

    def _logs(self, values):
        for tracker, value in zip(self.metrics, values, strict=True):
            tracker.update_state(value)
        return {tracker.name: tracker.result() for tracker in self.metrics}

    def train_step(self, *args):
        backend = keras.backend.backend()
        if backend == "jax":
            return self._jax_train_step(*args)
        data = args[0]
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                values = self.losses_of(data, self(data, training=True))
            grads = tape.gradient(values[0], self.trainable_weights)
        else:
            import torch

            self.zero_grad()
            values = self.losses_of(data, self(data, training=True))
            values[0].backward()
            grads = [v.value.grad for v in self.trainable_weights]
            with torch.no_grad():
                self.optimizer.apply(grads, self.trainable_weights)
            return self._logs(values)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        return self._logs(values)

    def _jax_loss(self, trainable, non_trainable, x):
        outputs, non_trainable = self.stateless_call(trainable, non_trainable, x, training=True)
        values = self.losses_of(x, outputs)
        return values[0], (values, non_trainable)

    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_vars, metrics_vars = state
        (_, (values, non_trainable)), grads = jax.value_and_grad(self._jax_loss, has_aux=True)(
            trainable, non_trainable, data
        )
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads, trainable)
        logs, updated = {}, []
        for tracker, value in zip(self.metrics, values, strict=True):
            own = metrics_vars[len(updated) : len(updated) + len(tracker.variables)]
            own = tracker.stateless_update_state(own, value)
            logs[tracker.name] = tracker.stateless_result(own)
            updated += own
        return logs, (trainable, non_trainable, optimizer_vars, updated)


def train(logdir, spy):
    x, _ = images(size=4)
    x = (x.reshape(len(x), -1) - x.min()) / (x.max() - x.min())
    vae = VAE(features=x.shape[1])
    vae.compile(optimizer=keras.optimizers.Adam(1e-2))
    live_monitor = LiveMonitor(logdir, name="vae_custom_train_step", **MONITOR)
    return [vae.fit(x, epochs=2, batch_size=32, verbose=0, callbacks=[live_monitor, spy])]
