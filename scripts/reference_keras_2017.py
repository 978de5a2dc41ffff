"""The 2017 Keras example (keras/examples/pretrained_word_embeddings.py, Keras 2.0.x) as one plain script.

The benchmark's reference: the same network and fit call as the example, ported to Keras 3 only where the
API moved (``weights=[...]`` -> ``set_weights`` after build). It trains on arrays saved by
``scripts/bench_trainer.py`` so both sides see identical data, and prints one JSON line per epoch.

    python scripts/reference_keras_2017.py ARRAYS.npz EPOCHS
"""

import json
import sys
import time

import keras
import numpy as np
from keras import layers

arrays = np.load(sys.argv[1])
epochs = int(sys.argv[2])
x_train, y_train, x_val, y_val = arrays["x_train"], arrays["y_train"], arrays["x_val"], arrays["y_val"]
embedding_matrix = arrays["embedding_matrix"]
num_words, embedding_dim = embedding_matrix.shape
max_sequence_length = x_train.shape[1]
classes = int(max(y_train.max(), y_val.max())) + 1
# The example one-hot encodes labels: labels = to_categorical(np.asarray(labels)).
y_train = keras.utils.to_categorical(y_train, classes)
y_val = keras.utils.to_categorical(y_val, classes)

embedding_layer = layers.Embedding(num_words, embedding_dim, trainable=False)
sequence_input = keras.Input(shape=(max_sequence_length,), dtype="int32")
embedded_sequences = embedding_layer(sequence_input)
embedding_layer.set_weights([embedding_matrix])
x = layers.Conv1D(128, 5, activation="relu")(embedded_sequences)
x = layers.MaxPooling1D(5)(x)
x = layers.Conv1D(128, 5, activation="relu")(x)
x = layers.MaxPooling1D(5)(x)
x = layers.Conv1D(128, 5, activation="relu")(x)
x = layers.MaxPooling1D(35)(x)
x = layers.Flatten()(x)
x = layers.Dense(128, activation="relu")(x)
preds = layers.Dense(classes, activation="softmax")(x)
model = keras.Model(sequence_input, preds)
model.compile(loss="categorical_crossentropy", optimizer="rmsprop", metrics=["acc"])


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        print(json.dumps({"epoch": epoch + 1, "epoch_seconds": time.perf_counter() - self.started,
                          "val_acc": float(logs["val_acc"])}), flush=True)


model.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_data=(x_val, y_val), verbose=0,
          callbacks=[EpochTimer()])
