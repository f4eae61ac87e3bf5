"""Data-parallel training on MPI (mpi4py): K processes ("ranks") train one network as one process would.

Every rank holds the whole network and the whole (or memory-mapped) data set, and follows the same
shuffled order (from the seed). For each global batch of B rows, rank r takes its shard, rows
lo_r..hi_r of the batch (the shards' sizes differ by at most one), and computes its part of the
gradient of the batch's objective:

    J = (1/B) sum_{i in batch} w_i l_i + R(theta)
      = sum_r [ (1/B) sum_{i in shard r} w_i l_i  +  (R(theta) if r == 0) ]

(net.backprop(..., n_total=B, penalty=(r == 0)): the 1/B of the whole batch, the penalty once). One
Allreduce (sum) of the gradient vector net.grads, in place, then gives every rank the gradient of the
whole batch, and every rank takes the same optimizer step (clipping, if any, after the sum). A second,
16-byte Allreduce carries the loss and the ranks' Ctrl-C flags, so that every rank takes the same
decisions (stop, diverged). Rank 0 alone evaluates the validation data (the logs are broadcast),
writes checkpoints and shows progress; the caller writes the model on rank 0 (:func:`is_root`).

Dropout: rank 0 draws its masks from the network's own stream (net.rng), rank r > 0 from that stream
jumped ahead r times (PCG64.jumped: streams that do not overlap). With K = 1 the run is therefore the
single-process run, bit for bit. Why K > 1 equals it only to rounding: docs/scaling.md.

Batch normalization is synchronized: every rank's BatchNorm normalizes by the global batch's mean and
biased variance and backpropagates with the global batch's sums (its ``reduce`` is
:meth:`Group.sum_over_ranks` during each step: two small Allreduces per batch-norm layer forward, one
backward; docs/derivations.md, "Batch norm over K processes"), so every rank folds the same statistics
into its running ones and the ranks' models stay identical.

A rank that fails while training ends the whole job (MPI Abort) after printing its error: the others
would otherwise wait forever in the next Allreduce. Files are written atomically, so no file is left
half-written. Bad input found before the first step (the settings, a checkpoint of another run or of
another number of ranks, ranks holding different data) is not a failure of one rank: each part of fit's
set-up runs on every rank, and the ranks agree on how it ended (:func:`together`), so every rank raises
the same error and the job ends without an abort (the command line prints it once and exits with 2). A diverging
loss is no rank's failure either: the batch's J is summed over the ranks, so every rank raises the same
TrainingError at the same step, without an abort.

mpi4py is imported here only, lazily: ``pip install handgrad[mpi]`` (mpi4py and the mpich wheel).
"""

import contextlib
import functools
import hashlib
import importlib.util
import pickle
import sys

import numpy as np

from .errors import ConfigError, HandgradError, TrainingError
from .layers import BatchNorm

_INSTALL = "pip install handgrad[mpi] (mpi4py and the mpich wheel), or mpi4py over a system MPI"


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ConfigError(f"data-parallel training needs mpi4py and an MPI: {_INSTALL}.") from None
    return MPI


def communicator(distributed):
    """The communicator ``fit(distributed=...)`` asks for: None for False/None, MPI.COMM_WORLD for True,
    or the mpi4py communicator given."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return _mpi().COMM_WORLD
    if not all(hasattr(distributed, name) for name in ("Get_rank", "Get_size", "Allreduce", "Abort")):
        raise ConfigError(f"distributed must be True, False or an mpi4py communicator, got {distributed!r}.")
    return distributed


def is_root(distributed=True):
    """True on rank 0, and in a process without MPI (mpi4py not installed): the process that writes
    files and prints."""
    if distributed is True and importlib.util.find_spec("mpi4py") is None:
        return True
    comm = communicator(distributed)
    return comm is None or comm.Get_rank() == 0


def launched_by_mpiexec():
    """(this process's rank, the number of processes) that mpiexec started, from the environment it sets (MPICH,
    Intel MPI: PMI_RANK/PMI_SIZE; Open MPI: OMPI_COMM_WORLD_RANK/_SIZE), without importing MPI; (0, 1) otherwise."""
    import os

    for rank, size in (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")):
        try:
            return int(os.environ[rank]), int(os.environ[size])
        except (KeyError, ValueError):
            continue
    return 0, 1


def shard_bounds(n, rank, size):
    """Rows lo..hi (hi excluded) of a batch of n rows for ``rank`` of ``size``: the first n % size ranks
    take one row more, so rank 0's shard is never empty."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class Group:
    """The ranks of one data-parallel run, as the trainer sees them (training.fit makes one)."""

    def __init__(self, comm):
        self.comm = comm
        self.MPI = _mpi()
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.is_root = self.rank == 0
        self.status = np.zeros(2)  # [this rank's part of J, this rank's Ctrl-C flag], summed over the ranks
        self.local_interrupt = None  # this rank's Ctrl-C flag (the trainer's; it has .raised)
        self.raised = False  # any rank's Ctrl-C, as of the last step: the same on every rank
        self.dropout = None

    # ------------------------------------------------------------------ one step
    def shard(self, n):
        """(lo, hi): this rank's rows of a batch of n rows."""
        return shard_bounds(n, self.rank, self.size)

    def gradient(self, net, X, T, w, n_total, training=True):
        """The whole batch's J, and its gradient in net.grads on every rank, from this rank's shard (X, T, w).
        Batch norm normalizes by the global batch's statistics: its sums go over the ranks (sum_over_ranks),
        and a rank without rows of this batch still takes part in them, adding nothing."""
        synchronized = self.size > 1 and bool(net.batch_norms())
        if X.shape[0] or synchronized:
            with net.synchronized_batch_norm(self.sum_over_ranks if synchronized else None):
                J = net.backprop(X, T, w, training=training, n_total=n_total, penalty=self.is_root)
        else:  # a last batch shorter than K rows leaves some ranks without rows
            net.grads.fill(0)
            J = 0.0
        self.status[0] = J
        self.status[1] = float(self.local_interrupt is not None and self.local_interrupt.raised)
        self.comm.Allreduce(self.MPI.IN_PLACE, net.grads, op=self.MPI.SUM)  # the one sum of the gradient vector
        self.comm.Allreduce(self.MPI.IN_PLACE, self.status, op=self.MPI.SUM)
        self.raised = bool(self.status[1] > 0)
        return float(self.status[0])

    def sum_over_ranks(self, array):
        """``array`` (float64) summed over the ranks, in place, the same on every rank: batch norm's sums
        over the global batch (layers.BatchNorm.reduce)."""
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return array

    def agree_on(self, interrupt):
        """Send this rank's Ctrl-C flag (``interrupt.raised``) with every step's sum; the group's own
        ``raised`` is then any rank's flag as of the last step, so every rank stops at the same step."""
        self.local_interrupt = interrupt
        return self

    # ------------------------------------------------------------------ dropout streams
    def check(self, net, state, n_samples):
        """Refuse, on every rank alike (ConfigError), what would make the ranks drift apart or wait for each
        other forever: different numbers of training rows (the ranks would take different numbers of steps),
        a checkpoint (``state``) written by another number of ranks, a batch norm that does not sum over the
        ranks. Collective: every rank calls it, and the allgather comes first."""
        counts = self.comm.allgather(n_samples)
        if len(set(counts)) > 1:
            held = ", ".join(f"rank {r}: {n} samples" for r, n in enumerate(counts))
            raise ConfigError(f"the ranks hold different data ({held}); every rank must load the same training "
                              "data (the same file, split and seed).")
        saved = (state or {}).get("distributed", {"ranks": 1})
        if state is not None and saved["ranks"] != self.size:
            raise ConfigError(f"the checkpoint was written by {saved['ranks']} rank(s); resume it with the same "
                              f"number (mpiexec -n {saved['ranks']}), not {self.size}.")
        _check_norms(net)

    def start(self, net, state=None):
        """Every rank starts from rank 0's weights and dropout stream (a network built without a seed has other
        weights on every rank); rank r > 0 draws from that stream jumped r times, or from the stream a
        checkpoint (``state``) saved for it. :meth:`check` first."""
        saved = (state or {}).get("distributed", {"ranks": 1, "dropout_streams": []})
        self.comm.Bcast(net.params, root=0)  # the weights, in place (net.params is the one parameter vector)
        for _, array in net.running_statistics():  # batch norm's running statistics: rank 0's too
            self.comm.Bcast(array, root=0)
        net.rng.bit_generator.state = self.comm.bcast(net.rng.bit_generator.state, root=0)
        if self.is_root:
            self.dropout = net.rng
        elif saved["dropout_streams"]:
            self.dropout = np.random.default_rng()
            self.dropout.bit_generator.state = saved["dropout_streams"][self.rank - 1]
        else:
            self.dropout = np.random.Generator(net.rng.bit_generator.jumped(self.rank))
        return net.dropout_stream(self.dropout)

    def checkpoint_state(self):
        """What a checkpoint needs besides rank 0's state (collective: every rank calls it; None off rank 0)."""
        streams = self.comm.gather(self.dropout.bit_generator.state, root=0)
        return {"ranks": self.size, "dropout_streams": streams[1:]} if self.is_root else None

    # ------------------------------------------------------------------ epochs
    def agree(self, value):
        """Rank 0's ``value`` on every rank (e.g. a seed drawn at random when none was given)."""
        return self.comm.bcast(value, root=0)

    def from_root(self, compute):
        """compute() on rank 0, its result on every rank (the validation logs: every rank decides alike)."""
        return self.comm.bcast(compute() if self.is_root else None, root=0)

    def agree_to_stop(self, reason):
        """After an epoch's callbacks: the first rank's stop reason (None: go on), the same on every rank. A
        callback that stops on one rank only (a time limit, say) would otherwise leave the others waiting in
        the next Allreduce forever."""
        reasons = self.comm.allgather(reason)
        return next((f"{why} (on rank {rank})" if rank else why for rank, why in enumerate(reasons)
                     if why is not None), None)

    def check_same_weights(self, net, epoch):
        """Every rank must hold the same theta (each takes the same step from the same sum) and the same batch
        norm running statistics (each folds in the same global statistics); a TrainingError if not."""
        digest = hashlib.sha256(net.params.tobytes())
        for _, array in net.running_statistics():
            digest.update(array.tobytes())
        digests = self.comm.allgather(digest.hexdigest())
        if len(set(digests)) > 1:
            raise TrainingError(f"after epoch {epoch} the ranks' weights differ: this MPI's Allreduce did not give "
                                "every rank the same sum, so the ranks drifted apart; use an MPI (or an "
                                "Allreduce algorithm) that does, such as MPICH's (docs/scaling.md).")


def _check_norms(net):
    """Refuse a normalization whose statistics run over the batch but that does not take its sums over the
    ranks (a BatchNorm subclass with a forward or backward of its own): each rank would normalize by its
    own shard's statistics, not the global batch's. Layer norm is per sample and needs nothing."""
    for k, layer in enumerate(getattr(net, "layers", ()), 1):
        norm = getattr(layer, "norm", None)
        if norm is None or getattr(norm, "axis", None) != 0:
            continue
        kind = type(norm)
        if not (isinstance(norm, BatchNorm) and kind.forward is BatchNorm.forward
                and kind.backward is BatchNorm.backward):
            raise ConfigError(f"layer {k}'s normalization ({kind.__name__}) computes statistics over the batch but "
                              "not over the ranks' shards together: under data-parallel training each rank would "
                              "normalize by its own shard's statistics. Use handgrad's BatchNorm ('batch'), a "
                              "per-sample norm ('layer'), or train in one process.")


def single_process(state):
    """For a run without MPI: refuse a checkpoint that K > 1 ranks wrote (their dropout streams are in it)."""
    ranks = (state or {}).get("distributed", {"ranks": 1})["ranks"]
    if ranks != 1:
        raise ConfigError(f"the checkpoint was written by {ranks} ranks; resume it under mpiexec -n {ranks} with "
                          "distributed=True (--distributed).")
    return contextlib.nullcontext()


def ends_job_on_error(fit):
    """Decorate ``fit``: under data-parallel training with K > 1 ranks, an error on any rank prints
    'handgrad: rank r of K failed: ...' and ends the whole job (MPI Abort, exit status 2)."""

    @functools.wraps(fit)
    def guarded(*args, **options):
        comm = communicator(options.get("distributed"))
        if comm is None or comm.Get_size() == 1:
            return fit(*args, **options)
        with abort_on_error(comm):
            return fit(*args, **options)

    return guarded


@contextlib.contextmanager
def abort_on_error(comm):
    """Inside the block, an exception on this rank prints its error and aborts every rank of ``comm``."""
    try:
        yield
    except BaseException as error:  # also KeyboardInterrupt: the other ranks would wait for this one forever
        if raised_on_every_rank(error):  # the ranks agreed to stop (together): nobody waits, no abort
            raise
        rank, size = comm.Get_rank(), comm.Get_size()
        print(f"handgrad: rank {rank} of {size} failed: {type(error).__name__}: {error}", file=sys.stderr,
              flush=True)
        comm.Abort(2)
        raise


def prepare_together(comm, prepare, bad_input=(HandgradError, OSError)):
    """``prepare()`` on every rank of ``comm``, then one allgather of how it ended, so that the ranks go on
    together or stop together (a rank that stopped alone would leave the others waiting forever).

    Returns ``(prepare()'s result, None)`` when every rank succeeded. When some rank's prepare raised one
    of ``bad_input`` (the user's input: a flag, a file), every rank gets ``(None, error)``: the first such
    rank's error, its message saying which rank when that is not rank 0, to be reported once (by rank 0).
    Any other error (a bug) ends the job as one during training does: that rank prints it and aborts
    (:func:`abort_on_error`); the other ranks get ``(None, None)``.
    """
    result, error = None, None
    try:
        result = prepare()
    except BaseException as caught:  # every rank must reach the allgather, whatever happened
        error = caught
    outcome = None if error is None else _portable(error) if isinstance(error, bad_input) else "crashed"
    outcomes = comm.allgather(outcome)
    if outcome == "crashed":
        with abort_on_error(comm):
            raise error
    failed = [(rank, what) for rank, what in enumerate(outcomes) if what is not None]
    if not failed:
        return result, None
    rank, first = failed[0]
    if rank == comm.Get_rank():
        first = error  # this rank's own error object (its traceback, for --debug)
    if first == "crashed":
        return None, None
    return None, first if rank == 0 else _on_rank(first, rank, comm.Get_size())


def together(group, step):
    """``step()``, one part of the set-up before the first step (training.fit), alone (``group`` None) or on
    every rank of ``group``, which then agree on how it ended (:func:`prepare_together`). When bad input (a
    HandgradError or OSError) stopped some rank, every rank raises the first such error, marked as raised on
    every rank: :func:`abort_on_error` lets it through, so the ranks stop together without MPI Abort, and the
    caller can report it once. A bug on some rank ends the job with MPI Abort, as during training."""
    if group is None:
        return step()
    outcome, error = prepare_together(group.comm, lambda: (step(),))
    if error is not None:
        error.handgrad_on_every_rank = True
        raise error
    if outcome is None:  # another rank crashed and is ending the job (MPI Abort)
        raise TrainingError("another rank failed while setting up the training; the job ends.")
    return outcome[0]


def on_every_rank(error):
    """``error``, marked as raised on every rank alike (at the same step, from figures every rank shares)."""
    error.handgrad_on_every_rank = True
    return error


def raised_on_every_rank(error):
    """True for an error that :func:`together` raised on every rank alike (the ranks stop together)."""
    return getattr(error, "handgrad_on_every_rank", False) is True


def _portable(error):
    """``error`` if it survives pickling (to travel to the other ranks), else a HandgradError with its message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return HandgradError(str(error))


def _on_rank(error, rank, size):
    """``error`` with "on rank r of K: " before its message (an OSError's strerror, another error's first argument)."""
    where = f"on rank {rank} of {size}: "
    if isinstance(error, OSError) and error.strerror:
        error.strerror = where + error.strerror
    else:
        error.args = (where + str(error),)
    return error
