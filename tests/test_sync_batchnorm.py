"""Batch norm over K processes, without MPI; and the trainer's deferred commit of the running statistics.

K threads stand in for K ranks: each holds its own copy of the network and its shard of the batch, and
``ThreadSum`` sums an array over the threads as MPI's Allreduce would (every thread gets the same sum).
With it, the shards' outputs, J and gradients must be the unsharded batch's (docs/derivations.md, "Batch
norm over K processes"), and central differences of the sharded objective must match its gradient.
Sums in another order than one process's: equal to rounding (1e-13 relative), not bit for bit.

The deferred commit (training.train_step): fit must give, bit for bit, what a loop of
``backprop(training=True)`` (running statistics updated in the forward pass, as train_step did before)
and optimizer steps gives.
"""

import pickle
import threading

import numpy as np
import pytest

import handgrad as hg
from handgrad.distributed import shard_bounds
from handgrad.layers import OBJECTIVE, OBJECTIVE_WITH_DROPOUT, BatchNorm
from handgrad.optimizers import get_optimizer

LAYERS = ["7:tanh:batchnorm", "6:relu:layernorm", "5:sigmoid:batchnorm", (3, "softmax")]


class ThreadSum:
    """An in-process Allreduce(SUM) for K threads: ``for_rank(r)`` is rank r's ``reduce``."""

    def __init__(self, K):
        self.parts = [None] * K
        self.barrier = threading.Barrier(K)

    def for_rank(self, rank):
        def reduce(array):
            self.parts[rank] = np.array(array, dtype=np.float64)
            self.barrier.wait()
            total = sum(self.parts[1:], self.parts[0].copy())  # in rank order, the same on every thread
            self.barrier.wait()  # every thread has read the parts before the next sum overwrites them
            return total

        return reduce


def on_threads(K, work):
    """work(rank, reduce) on K threads at once; their results in rank order (an error on any is raised)."""
    results, errors, sums = [None] * K, [None] * K, ThreadSum(K)

    def run(rank):
        try:
            results[rank] = work(rank, sums.for_rank(rank))
        except BaseException as error:  # (handed to the caller)
            errors[rank] = error
            sums.barrier.abort()  # the others would wait for this one forever

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(K)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    raised = [error for error in errors if error is not None and not isinstance(error, threading.BrokenBarrierError)]
    first = raised[0] if raised else None
    if first is not None:
        raise first
    return results


def problem(N, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 4)) * 2 + 1
    y = rng.integers(0, 3, size=N)
    return X, y, rng.uniform(0.2, 2.0, size=N)


def sharded_pass(net, X, T, w, K, mode=OBJECTIVE):
    """Each of K ranks (a copy of net) runs backprop on its shard with the global batch's norms:
    [(J_r, grads_r, A_r, copy_r)] in rank order."""
    N = X.shape[0]
    copies = [net.copy() for _ in range(K)]

    def work(rank, reduce):
        lo, hi = shard_bounds(N, rank, K)
        mine = copies[rank]
        with mine.synchronized_batch_norm(reduce):
            J = mine.backprop(X[lo:hi], T[lo:hi], w[lo:hi], training=mode, n_total=N, penalty=rank == 0)
        return J, mine.grads.copy(), mine.layers[-1].A.copy(), mine

    return on_threads(K, work)


# ---------------------------------------------------------------------------- the sums over the processes
@pytest.mark.parametrize(("N", "K"), [(11, 2), (11, 3), (13, 4), (3, 4)])  # (3, 4): rank 3 holds no rows
def test_k_shards_with_global_sums_give_the_unsharded_pass(N, K):
    X, y, w = problem(N)
    net = hg.MLP(4, LAYERS, seed=1, l2=0.01)
    T = net.check_targets(y, N)
    J = net.backprop(X, T, w, training=OBJECTIVE)
    shards = sharded_pass(net, X, T, w, K)
    assert sum(J_r for J_r, *_ in shards) == pytest.approx(J, rel=1e-13)
    np.testing.assert_allclose(np.concatenate([A for _, _, A, _ in shards]), net.layers[-1].A, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(sum(grads for _, grads, _, _ in shards), net.grads, rtol=1e-11, atol=1e-14)
    assert np.abs(net.grads).max() > 1e-2
    for k, norm in enumerate(net.batch_norms()):  # every rank holds the global batch's statistics
        for *_, copy in shards:
            theirs = copy.batch_norms()[k]
            assert theirs.count == N and theirs.reduce is None  # (the hook is off again after the block)
            np.testing.assert_allclose(theirs.mean, norm.mean, rtol=1e-14, atol=1e-15)
            np.testing.assert_allclose(theirs.var, norm.var, rtol=1e-13)


def test_without_the_sums_each_shard_would_normalize_by_its_own_statistics():
    """The check above can fail: shards normalized by their own statistics give another gradient."""
    X, y, w = problem(11)
    net = hg.MLP(4, LAYERS, seed=1)
    T = net.check_targets(y, 11)
    net.backprop(X, T, w, training=OBJECTIVE)
    local = np.zeros_like(net.grads)
    for rank in range(2):
        lo, hi = shard_bounds(11, rank, 2)
        copy = net.copy()
        copy.backprop(X[lo:hi], T[lo:hi], w[lo:hi], training=OBJECTIVE, n_total=11, penalty=rank == 0)
        local += copy.grads
    assert np.abs(local - net.grads).max() > 1e-3


def test_central_differences_of_the_sharded_objective():
    X, y, w = problem(9, seed=3)
    net = hg.MLP(4, ["5:tanh:batchnorm", "4:relu:batchnorm", (2, "identity")], seed=2, l2=0.01)
    T = net.check_targets(np.random.default_rng(4).normal(size=(9, 2)), 9)
    K = 3

    def objective(theta):
        probe = net.copy()
        probe.params[...] = theta
        shards = sharded_pass(probe, X, T, w, K)
        return sum(J for J, *_ in shards), sum(grads for _, grads, _, _ in shards)

    theta = net.params.copy()
    _, analytic = objective(theta)
    h, numeric = 1e-6, np.empty_like(theta)
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = h
        numeric[i] = (objective(theta + step)[0] - objective(theta - step)[0]) / (2 * h)
    scale = np.maximum(np.abs(numeric), 1e-3)
    assert (np.abs(analytic - numeric) / scale).max() < 1e-6, np.abs(analytic - numeric).max()


def test_a_global_batch_of_one_sample_is_refused_on_every_rank():
    """Rank 1 holds no rows, rank 0 one: the count comes from the sum, so both refuse, together."""
    net = hg.MLP(4, LAYERS, seed=1)
    X, y, w = problem(1)
    with pytest.raises(hg.DataError, match="at least 2 samples per batch"):
        sharded_pass(net, X, net.check_targets(y, 1), w, 2)


def test_the_running_statistics_fold_in_the_global_batch():
    X, y, w = problem(10)
    net = hg.MLP(4, LAYERS, seed=1)
    T = net.check_targets(y, 10)
    shards = sharded_pass(net, X, T, w, 3, mode=OBJECTIVE_WITH_DROPOUT)
    net.backprop(X, T, w, training=True)  # one process, running statistics updated in the forward pass
    for *_, copy in shards:
        copy.update_running_statistics()  # unbiased with the global N = 10, not the shard's
        for (name, ours), (_, theirs) in zip(net.running_statistics(), copy.running_statistics()):
            np.testing.assert_allclose(theirs, ours, rtol=1e-13, err_msg=name)
            assert not np.allclose(theirs, 0.0 if "mean" in name else 1.0)


def test_a_copy_never_carries_the_sum():
    norm = BatchNorm(3)
    norm.reduce = print
    assert pickle.loads(pickle.dumps(norm)).reduce is None


# ---------------------------------------------------------------------------- the deferred commit
def test_fit_commits_the_running_statistics_bit_for_bit_as_the_forward_pass_did():
    """train_step no longer updates in the forward pass (it commits after a finite loss): the same bits as a loop
    of backprop(training=True), which does update in the forward pass, and the same optimizer's steps."""
    X, y, w = problem(45)
    layers = ["8:relu:batchnorm", "6:tanh:batchnorm", (3, "softmax")]
    net = hg.MLP(4, layers, seed=5, dropout=0.2)
    reference = hg.MLP(4, layers, seed=5, dropout=0.2)
    net.fit(X, y, epochs=3, batch_size=10, optimizer="adam", learning_rate=0.01, shuffle=False, sample_weight=w,
            verbose=False)
    T = reference.check_targets(y, 45)
    adam = get_optimizer("adam")
    for _ in range(3):
        for start in range(0, 45, 10):
            rows = slice(start, start + 10)
            reference.backprop(X[rows], T[rows], w[rows], training=True)
            adam.step(reference.params, reference.grads, 0.01)
    np.testing.assert_array_equal(net.params, reference.params)
    for (name, ours), (_, theirs) in zip(net.running_statistics(), reference.running_statistics()):
        np.testing.assert_array_equal(ours, theirs, err_msg=name)
        assert not np.allclose(ours, 0.0 if "mean" in name else 1.0)


def test_committing_needs_a_pass_with_batch_statistics():
    net = hg.MLP(4, ["5:tanh:batchnorm", (3, "softmax")], seed=0)
    X, y, _ = problem(6)
    net.loss(X, y, batch_statistics=False)  # the running statistics: nothing to commit
    with pytest.raises(hg.ConfigError, match="batch statistics of the last forward pass"):
        net.update_running_statistics()
    before = [array.copy() for _, array in net.running_statistics()]
    net.loss(X, y)  # OBJECTIVE: batch statistics, nothing updated ...
    assert all(np.array_equal(a, b) for a, (_, b) in zip(before, net.running_statistics()))
    net.update_running_statistics()  # ... until committed, once
    mean, var = net.layers[0].norm.mean[0], net.layers[0].norm.var[0]
    np.testing.assert_array_equal(net.running_statistics()[0][1], 0.1 * mean)
    np.testing.assert_allclose(net.running_statistics()[1][1], 0.9 + 0.1 * var * 6 / 5, rtol=1e-15)
