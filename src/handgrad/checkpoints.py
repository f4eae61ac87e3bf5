"""Training checkpoints: everything a run needs to continue bit for bit, in one atomic file.

A checkpoint is a handgrad archive (handgrad.io: checksummed .npz, no pickle, written to a
temporary file and renamed) of kind ``handgrad-checkpoint`` holding the training state:

    params            the parameter vector theta (net.params)
    running           batch norm's running statistics (running_mean1, running_var1, ...; empty without)
    optimizer         name, step count, hyperparameters and its state vectors (same layout as theta)
    schedule          the schedule's position
    shuffle_rng,      the random streams: the shuffling order's and the network's dropout stream
    net_rng
    order             the current epoch's order of the samples
    epochs_done, batch_done, step, epoch_total, epoch_seen    where the run stands
    history, callbacks, config, seed, n_samples, batch_size, epochs
    block_rows        the rows per block of streamed data (handgrad.streaming); None for data in memory
    data              the training data's fingerprint (:func:`data_fingerprint`)
    preprocessing     what was done to X before fit (the CLI's standardization), or None

Arrays are stored as .npy members and the rest as JSON that refers to them. Checkpoints written by
handgrad 0.1 (a list of weight arrays, and optimizer state per array) are converted when read; those
written before block_rows, data and preprocessing were recorded resume without these checks
(:func:`check_same_data`).
"""

import hashlib
import os

import numpy as np

from .errors import ConfigError, ModelFileError
from .io import read_archive, refuse_non_finite, write_archive

CHECKPOINT_KIND = "handgrad-checkpoint"


def _flatten(prefix, value, arrays):
    """Split nested state into arrays (stored as .npy members) and JSON metadata that refers to them."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {"__array__": prefix}
    if isinstance(value, dict):
        return {str(k): _flatten(f"{prefix}.{k}", v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_flatten(f"{prefix}.{i}", v, arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _unflatten(value, arrays):
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: _unflatten(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, arrays) for v in value]
    return value


def write_checkpoint(path, state):
    """Write the training state atomically (a crash mid-write leaves the old file intact)."""
    arrays = {}
    metadata = _flatten("state", state, arrays)
    write_archive(path, arrays, {"kind": CHECKPOINT_KIND, "state": metadata})


def read_checkpoint(path):
    """The training state stored by :func:`write_checkpoint`, or a ModelFileError saying what the file is."""
    arrays, metadata = read_archive(path)
    if metadata.get("kind") != CHECKPOINT_KIND:
        raise ModelFileError(f"'{os.fspath(path)}' is not a training checkpoint (kind {metadata.get('kind')!r}); "
                             "pass a file written by fit(checkpoint=...).")
    state = _unflatten(metadata["state"], arrays)
    _refuse_non_finite_weights(state, f"'{os.fspath(path)}'")
    return state


def _refuse_non_finite_weights(state, where):
    """A checkpoint's weights, running statistics, optimizer state vectors and early stopping's best weights
    must be finite (io.refuse_non_finite). Its history, schedule and callbacks' numbers may be non-finite on
    purpose (a NaN validation loss, ReduceOnPlateau's best = inf) and are not checked."""
    if not isinstance(state, dict):
        return
    named = [("params", state.get("params"))]
    named += [(f"weights.{i}", array) for i, array in enumerate(_items(state.get("weights")))]
    named += list(_entries(state.get("running")))
    optimizer = state.get("optimizer")
    if isinstance(optimizer, dict):
        named += [(f"optimizer state '{name}'", vector) for name, vector in _entries(optimizer.get("state"))]
    for callback in _items(state.get("callbacks")):
        saved = callback.get("state") if isinstance(callback, dict) else None
        if isinstance(saved, dict):
            named.append(("best_params", saved.get("best_params")))  # early stopping's best epoch (one vector)
            named += [(f"best_weights.{i}", array) for i, array in enumerate(_items(saved.get("best_weights")))]
            named += list(_entries(saved.get("best_running")))
    for name, array in named:
        if isinstance(array, np.ndarray):
            refuse_non_finite(array, name, where)


def _items(value):
    return value if isinstance(value, list) else []


def _entries(value):
    return value.items() if isinstance(value, dict) else []


# The per-array state names of handgrad 0.1's optimizers ("scratch" was work space, not state).
_OLD_STATE_NAMES = {"momentum": ("velocity",), "nesterov": ("velocity", "scratch"), "adam": ("m", "v", "scratch"),
                    "adamw": ("m", "v", "scratch"), "rmsprop": ("v", "scratch", "velocity")}


def parameter_vector(net, state):
    """theta from a checkpoint: ``params``, or handgrad 0.1's list of arrays in ``net.parameters()`` order."""
    if "params" in state:
        params = np.asarray(state["params"])
        if params.shape != net.params.shape:
            raise ConfigError(f"the checkpoint holds {params.size} parameters; this network has {net.params.size}.")
        return params
    saved = state["weights"]
    if [np.shape(a) for a in saved] != [a.shape for _, a in net.parameters()]:
        raise ConfigError("the checkpoint's weights do not fit this network's architecture.")
    return net.vector_from(saved)


def restore_running_statistics(net, state):
    """Copy a checkpoint's batch-norm running statistics into ``net`` (a checkpoint from before they
    existed has none, and fits only a network without batch norm)."""
    try:
        net.set_running_statistics(state.get("running", {}))  # checks the names, shapes and values
    except ConfigError as error:
        raise ConfigError(f"the checkpoint does not fit this network: {error} Resume with the network the "
                          "checkpoint was made with.") from None


def optimizer_state(net, saved):
    """An optimizer state dict with state vectors; handgrad 0.1's per-array lists are laid out as theta."""
    state = saved.get("state")
    if state is None or isinstance(state, dict):
        return saved
    names = _OLD_STATE_NAMES.get(saved.get("name"), ())
    vectors = {}
    for position, name in enumerate(names):
        if name != "scratch" and all(len(per_array) > position for per_array in state):
            vectors[name] = net.vector_from([per_array[position] for per_array in state])
    return {**saved, "state": vectors}


# ---------------------------------------------------------------------------- the same data?
def data_fingerprint(n_samples, X, T, w):
    """A cheap fingerprint of the training data, from a few of its rows: ``X``, ``T`` and ``w`` (or None)
    are the rows at handgrad.streaming.sample_rows(n_samples), as the trainer sees them (checked, the
    network's dtype, class weights included). It tells another file, other targets or other weights from
    the run's own, without reading the data again (a 4 GB memory-mapped file included); a change to rows
    outside the sample goes unseen."""
    def digest(rows):
        return None if rows is None else hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()[:32]

    return {"samples": int(n_samples), "features": int(X.shape[1]), "outputs": int(T.shape[1]),
            "dtype": np.dtype(X.dtype).name, "rows": int(X.shape[0]), "X": digest(X), "T": digest(T), "w": digest(w)}


_FINGERPRINT_PARTS = (("features", "the number of features"), ("outputs", "the number of target columns"),
                      ("dtype", "the data's dtype"), ("X", "the features X"), ("T", "the targets"),
                      ("w", "the sample weights (times the class weights)"))


def _block_rows_text(block_rows):
    return "in memory (block_rows None)" if block_rows is None else f"streamed in blocks of {block_rows} rows"


def check_same_data(state, block_rows, fingerprint, preprocessing):
    """Refuse (ConfigError) to resume a run on data other than its own: another block size of streamed data
    (the blocks' shuffled order would differ), other data (its :func:`data_fingerprint`), or another
    preprocessing; the message names every difference. A checkpoint written before these were recorded
    is not checked (its sample count is)."""
    if "block_rows" in state and state["block_rows"] != block_rows:
        saved = state["block_rows"]
        raise ConfigError(f"the checkpoint's run read its data {_block_rows_text(saved)}, this call "
                          f"{_block_rows_text(block_rows)}: the shuffled order of the blocks would not be the run's, "
                          f"so it cannot continue bit for bit. Resume with block_rows={saved}"
                          + (" and the data in memory." if saved is None else " (and the same data)."))
    saved = state.get("data")
    differ = []
    if saved is not None and fingerprint is not None and saved != fingerprint:
        differ = [text for key, text in _FINGERPRINT_PARTS if saved.get(key) != fingerprint.get(key)]
        differ = [f"{' and '.join(differ) or 'the rows'} (compared on {saved['rows']} evenly spread rows of its "
                  f"{saved['samples']})"]
    if "preprocessing" in state and state["preprocessing"] != preprocessing:
        differ.append(f"the preprocessing (the run's: {_preprocessing_text(state['preprocessing'])}; this call's: "
                      f"{_preprocessing_text(preprocessing)})")
    if differ:
        raise ConfigError(f"the checkpoint was made on other training data: {'; '.join(differ)} differ. Resume with "
                          "the data of that run (on the command line also its --limit, --validation, --test, --seed "
                          "and --no-standardize), or start a new run from the trained weights on the new data "
                          "(handgrad train --init-from MODEL.npz, the run's --out file, which reuses the model's "
                          "standardization; handgrad.load(model file).fit(...) in Python).")


def _preprocessing_text(record):
    if isinstance(record, dict) and "targets" in record:  # handgrad train --standardize-targets
        features = {key: value for key, value in record.items() if key != "targets"}
        return (f"{_preprocessing_text(features if features.get('kind') != 'none' else None)}, and a "
                "standardization of the targets (--standardize-targets)")
    if record is None:
        return "nothing (raw features)"
    if isinstance(record, dict) and record.get("kind") == "standardize":
        mean, scale = np.asarray(record.get("mean", [])), np.asarray(record.get("scale", []))
        return f"a standardization of {mean.size} features (mean {_few(mean)}, scale {_few(scale)})"
    return str(record)[:60]


def _few(values, shown=3):
    text = ", ".join(f"{v:.6g}" for v in values[:shown])
    return f"[{text}{', ...' if values.size > shown else ''}]"
