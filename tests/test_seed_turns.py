"""Seeds that take turns (sweeps.run.baton): a search's ``seeds: k`` on a trainer that keeps process-wide state (the
Keras network) trains its seeds one at a time in one Tune trial, each seed's process-wide random state saved and
restored at every handover. Each seed then trains what it trains alone: the baton with Python's, NumPy's, Keras' and
TensorFlow's global state on its own, and the Keras network end to end on a real local Ray and a real MLflow server
(both compute paths), per epoch against the same configuration trained at each seed in a trial of its own."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

from conftest import build_tiny_data_home
from sweeps import spec as spec_module
from sweeps.run import baton as baton_module
from sweeps.run import seed_group
from sweeps.tracking import names

EPOCHS = (1, 2, 3)


def train_seeds(seeds: list[int], start, epoch, *, turns: bool = True) -> tuple[dict[int, list], list]:
    """Each seed's ``epoch()`` results over three epochs, its thread reporting each one to a ``SeedGroup`` (with a
    baton where ``turns``), as ``seed_group.start_seed`` runs a seed; and who entered and left trainer code, in order."""
    group_seeds = [seed_group.Seed(spec_module.Trial("toy", {}, seed)) for seed in seeds]
    group = seed_group.SeedGroup(group_seeds, "value", baton=baton_module.Baton() if turns else None)
    drawn: dict[int, list] = {seed: [] for seed in seeds}
    events: list[tuple[str, int]] = []

    def train(seed: seed_group.Seed) -> None:
        number = seed.trial.seed
        try:
            if group.baton is not None:
                group.take_turn(seed)
            events.append(("enter", number))
            start(number)
            for index in EPOCHS:
                time.sleep(0.02)  # another thread would run here, were it allowed to
                drawn[number].append(epoch())
                events.append(("leave", number))
                group.report(seed, {"value": 0.0, "epoch": index})
                events.append(("enter", number))
            events.append(("leave", number))
        finally:
            group.finish(seed)
            if group.baton is not None:
                group.baton.give(number)

    threads = [threading.Thread(target=train, args=(seed,)) for seed in group_seeds]
    for thread in threads:
        thread.start()
    seed_group.coordinate(group, lambda metrics, checkpoint=None: None)
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return drawn, events


def one_at_a_time(events: list[tuple[str, int]]) -> bool:
    """Each enter is followed by the same seed's leave: no two seeds were in trainer code at once."""
    return len(events) % 2 == 0 and all(events[index][0] == "enter" and events[index + 1] == ("leave", events[index][1])
                                        for index in range(0, len(events), 2))


def test_seeds_that_take_turns_draw_from_python_and_numpy_as_each_seed_alone():
    def start(seed):
        random.seed(seed)
        np.random.seed(seed)

    def epoch():
        return random.random(), float(np.random.random())

    alone = {seed: train_seeds([seed], start, epoch)[0][seed] for seed in (0, 1, 2)}
    assert alone[0] != alone[1] != alone[2]
    together, events = train_seeds([0, 1, 2], start, epoch)
    assert together == alone
    assert one_at_a_time(events), events
    assert len({seed for _, seed in events}) == 3


def test_seeds_that_take_turns_keep_their_own_keras_and_tensorflow_state():
    """Each seed clears Keras' session and seeds everything, as ``trainer.train.seed_everything`` does; each epoch it
    builds a layer (its name from Keras' counters, its initial weights from a seed drawn from Python's ``random``) and
    draws from Keras' global SeedGenerator and from TensorFlow's global seed."""
    import keras
    import tensorflow as tf

    def start(seed):
        keras.backend.clear_session(free_memory=False)
        keras.utils.set_random_seed(seed)

    def epoch():
        layer = keras.layers.Dense(2)
        layer.build((None, 3))
        return (layer.name, np.asarray(layer.kernel).round(7).tolist(), float(keras.random.uniform(())),
                float(tf.random.uniform(())), random.random())

    alone = {seed: train_seeds([seed], start, epoch)[0][seed] for seed in (0, 1)}
    assert [draw[0] for draw in alone[0]] == ["dense", "dense_1", "dense_2"]
    assert alone[0] != alone[1]
    together, events = train_seeds([0, 1], start, epoch)
    assert together == alone, "every seed's names, weights and draws as alone, though the other cleared the session"
    assert one_at_a_time(events), events


# ---------------------------------------------------------------------------------------- end to end, Keras
FIXED = ("{dataset: '19997', architecture: global_max, max_sequence_length: 160, embedding: random, "
         "sizing: num_words_plus_one, batch_size: 8, epochs: 3}")
SEARCH = """\
name: {name}
factors:
  learning_rate: {{loguniform: [0.002, 0.01]}}
  compute_path: [fast, keras]
fixed: {fixed}
seeds: 2
search: {{mode: random, num_samples: 2, seed: 1}}
start_from: [{{learning_rate: 0.005, compute_path: fast}}, {{learning_rate: 0.005, compute_path: keras}}]
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 2
mlflow: {{tracking_uri: "{uri}"}}
storage_path: {storage}
"""
GRID = """\
name: {name}
factors: {{learning_rate: [0.005], compute_path: [fast, keras]}}
fixed: {fixed}
seeds: 2
resources: {{cpu: 1, gpu: 0}}
max_concurrent_trials: 2
mlflow: {{tracking_uri: "{uri}"}}
storage_path: {storage}
"""


def epochs_of(client, run) -> dict[str, list[float]]:
    """val_acc and val_loss per epoch (1, 2, 3) of a child run."""
    found = {}
    for key in ("val_acc", "val_loss"):
        history = {metric.step: metric.value for metric in client.get_metric_history(run.info.run_id, key)}
        assert sorted(history) == list(EPOCHS), (key, history)
        found[key] = [history[step] for step in EPOCHS]
    return found


def test_a_keras_search_with_seeds_2_trains_each_seed_as_it_trains_alone(tmp_path, mlflow_server, ray_local):
    from sweeps.run import driver
    from test_search_run import runs_of

    home = build_tiny_data_home(tmp_path / "data", versions=("19997",))
    trained = {}
    for kind, text in (("alone", GRID), ("turns", SEARCH)):
        name = f"keras-seed-turns-{kind}"
        path = tmp_path / f"{name}.yaml"
        path.write_text(text.format(name=name, fixed=FIXED, uri=mlflow_server, storage=tmp_path / "results"))
        spec = spec_module.load_sweep(path)
        assert spec.seeds == [0, 1] and spec.seeds_side_by_side == (2 if kind == "turns" else 1)
        result = driver.run_sweep(spec, data_home=str(home), cache_dir=str(tmp_path / "cache"),
                                  download_if_missing=False)
        assert result.ok, result
        client, _, children = runs_of(mlflow_server, name)
        assert len(children) == 4 and {run.info.status for run in children} == {"FINISHED"}
        trained[kind] = {(run.data.params["compute_path"], run.data.params["seed"]): run for run in children}
        assert {run.data.params["learning_rate"] for run in children} == {"0.005"}
    assert set(trained["turns"]) == set(trained["alone"]) == {(path, seed) for path in ("fast", "keras")
                                                              for seed in ("0", "1")}
    for path in ("fast", "keras"):
        pair = [trained["turns"][path, seed] for seed in ("0", "1")]
        # One configuration's two seeds: one Tune trial, one worker process, one configuration id.
        for tag in (names.TUNE_TRIAL_ID_TAG, names.WORKER_PID_TAG, names.CONFIG_ID_TAG):
            assert pair[0].data.tags[tag] == pair[1].data.tags[tag], tag
        values = {seed: {kind: epochs_of(client, trained[kind][path, seed]) for kind in ("alone", "turns")}
                  for seed in ("0", "1")}
        for seed, found in values.items():
            for key in ("val_acc", "val_loss"):
                assert found["turns"][key] == pytest.approx(found["alone"][key], abs=1e-6), (path, seed, key, found)
        # The seeds differ (their own split, weights and order): the comparison above can tell them apart.
        assert max(abs(first - second) for first, second in zip(values["0"]["alone"]["val_loss"],
                                                                 values["1"]["alone"]["val_loss"])) > 1e-3


# ----------------------------------------------------------------------------------- end to end, a user's trainer
USER_TRAINER = '''
import time

import numpy as np

from sweeps.trainers import Factor, Metric, report, trainer


@trainer(name="global_noise", factors=[Factor("rate", float, 0.5, "How fast it learns.", gt=0, lt=1),
                                       Factor("epochs", int, 3, "Epochs.", ge=1),
                                       Factor("seed", int, 0, "Seed.", ge=0)],
         metrics=[Metric("score", "max", low=0.0, high=1.0)], takes_turns=True)
def train(config):
    np.random.seed(config["seed"])  # process-wide: its seeds take turns
    for epoch in range(config["epochs"]):
        time.sleep(0.2)  # another seed drawing now would take this seed's numbers
        report({"score": float(np.random.random())})
'''

USER_SWEEP = '''
name: seed-turns-user
trainer: global_noise_trainer:train
factors: {rate: {uniform: [0.1, 0.9]}}
seeds: 3
search: {mode: random, num_samples: 1, seed: 1}
resources: {cpu: 1}
mlflow: {tracking_uri: "%s"}
storage_path: results
'''


def test_a_users_trainer_that_seeds_numpy_globally_takes_turns_and_draws_each_seeds_own_numbers(tmp_path, mlflow_server):
    from test_search_run import run_command, runs_of

    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "global_noise_trainer.py").write_text(USER_TRAINER)
    path = folder / "seed-turns-user.yaml"
    path.write_text(USER_SWEEP % mlflow_server)
    finished = run_command(["run", str(path), "--num-cpus", "2", "--no-report"], tmp_path)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    client, _, children = runs_of(mlflow_server, "seed-turns-user")
    assert sorted(run.data.params["seed"] for run in children) == ["0", "1", "2"]
    assert len({run.data.tags[names.WORKER_PID_TAG] for run in children}) == 1, "one trial's process"
    for run in children:
        steps = {metric.step: metric.value for metric in client.get_metric_history(run.info.run_id, "score")}
        expected = np.random.RandomState(int(run.data.params["seed"])).random_sample(3)
        assert [steps[epoch] for epoch in EPOCHS] == pytest.approx(list(expected), abs=1e-12)
