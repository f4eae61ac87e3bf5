"""Run by tests/test_distributed.py under ``mpiexec -n K``: train the cases named in a JSON file with
``fit(distributed=True)`` and write, from rank 0, every case's final weights (and every rank's, to check
that the ranks agree bit for bit) to an .npz file.

    mpiexec -n K python distributed_worker.py cases.json out.npz

A case is a dict: "problem" (see :func:`problem`), "dtype", "net" (MLP options) and "fit" (fit options;
"sample_weight": true draws weights). "npy": [X.npy, y.npy] memory-maps the problem's data from those
files (streamed). With "fail_on_rank": r, a callback raises on rank r at the end of epoch 2; with
"interrupt_on_rank": [r, epoch, batch], rank r sends itself a Ctrl-C (SIGINT) after that batch;
"stop_on_rank": r, a callback asks to stop on rank r alone at the end of epoch 2;
"out" saves the model on rank 0 after fit. "layers": a layer list in place of the problem's (e.g. with
"8:tanh:batchnorm"); every rank's batch-norm running statistics are written too. "unseeded": true builds
the network without a seed (other initial weights on every rank); "short_on_rank": r drops the last row on
rank r (the ranks' data differ); "fit_on_rank": [r, {options}] gives rank r other fit options;
"x_scale": c multiplies X by c (other data of the same shape).
"expect_error": true catches a handgrad error raised by fit and writes every rank's error ("NAME/errors",
"Type: message" per rank) in place of the weights.
"""

import json
import os
import signal
import sys

import numpy as np
from mpi4py import MPI

import handgrad as hg
from handgrad.distributed import is_root


def problem(name, dtype):
    """The small data sets of the tests: 203 samples (so shards and the last batch are uneven)."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(203, 5)).astype(dtype)
    if name == "classes":
        y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(np.int64) + (X[:, 2] > 0.8)
        return X, y, [(8, "tanh"), (3, "softmax")]
    y = np.sin(X[:, :2]).astype(dtype) + 0.1 * X[:, 2:4]
    return X, y, [(8, "tanh"), (2, "identity")]


def build(case):
    X, y, layers = problem(case["problem"], case["dtype"])
    if "npy" in case:  # the same data, memory-mapped from the .npy files the test wrote (streamed)
        X, y = (np.load(path, mmap_mode="r") for path in case["npy"])
    if "x_scale" in case:
        X = X * case["x_scale"]
    if case.get("short_on_rank") == MPI.COMM_WORLD.Get_rank():
        X, y = X[:-1], y[:-1]
    seed = None if case.get("unseeded") else 3
    layers = case.get("layers", layers)
    net = hg.MLP(X.shape[1], layers, dtype=case["dtype"], seed=seed, **case.get("net", {}))
    options = dict(case.get("fit", {}))
    if "fit_on_rank" in case and case["fit_on_rank"][0] == MPI.COMM_WORLD.Get_rank():
        options.update(case["fit_on_rank"][1])
    if options.pop("sample_weight", False):
        options["sample_weight"] = np.random.default_rng(11).uniform(0.2, 2.0, size=len(X))
    if options.pop("validation", False):
        options["validation_data"] = (X[:40], y[:40])
    return net, X, y, options


class FailOn(hg.callbacks.Callback):
    def __init__(self, rank):
        self.rank = rank

    def on_epoch_end(self, epoch, logs):
        if epoch == 2 and MPI.COMM_WORLD.Get_rank() == self.rank:
            raise RuntimeError(f"deliberate failure on rank {self.rank}")


class StopOn(hg.callbacks.Callback):
    def __init__(self, rank):
        self.rank = rank

    def on_epoch_end(self, epoch, logs):
        return epoch == 2 and MPI.COMM_WORLD.Get_rank() == self.rank


class InterruptOn(hg.callbacks.Callback):
    def __init__(self, rank, epoch, batch):
        self.at = (rank, epoch, batch)

    def on_batch_end(self, epoch, batch, loss):
        if (MPI.COMM_WORLD.Get_rank(), epoch, batch) == tuple(self.at):
            os.kill(os.getpid(), signal.SIGINT)


def running_statistics(net):
    """Every batch-norm running mean and variance of ``net``, one vector (empty without batch norm)."""
    return np.concatenate([array.ravel() for _, array in net.running_statistics()] or [np.zeros(0, net.dtype)])


def main(cases_path, out_path):
    with open(cases_path) as file:
        cases = json.load(file)
    comm = MPI.COMM_WORLD
    results = {}
    for name, case in cases.items():
        net, X, y, options = build(case)
        if "fail_on_rank" in case:
            options["callbacks"] = [FailOn(case["fail_on_rank"])]
        if "stop_on_rank" in case:
            options["callbacks"] = [StopOn(case["stop_on_rank"])]
        if "interrupt_on_rank" in case:
            options["callbacks"] = [InterruptOn(*case["interrupt_on_rank"])]
        try:
            history = net.fit(X, y, distributed=True, verbose=False, **options)
        except hg.HandgradError as error:
            if not case.get("expect_error"):
                raise
            errors = comm.gather(f"{type(error).__name__}: {error}", root=0)  # every rank raised: no one waits
            if is_root():
                results[name + "/errors"] = np.array(errors)
            continue
        every = comm.gather(net.params.copy(), root=0)
        running = comm.gather(running_statistics(net), root=0)
        reasons = comm.gather(history.stop_reason, root=0)
        if is_root():
            results[name] = net.params
            results[name + "/ranks"] = np.stack(every)
            results[name + "/running"] = np.stack(running)  # (K, ...): every rank's batch-norm running statistics
            results[name + "/loss"] = np.array(history.loss)
            results[name + "/stop_reasons"] = np.array(reasons)
            if "out" in case:
                net.save(case["out"])
    if is_root():
        np.savez(out_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
