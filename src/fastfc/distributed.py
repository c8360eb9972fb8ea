"""Data-parallel training over MPI (mpi4py): each rank computes the gradient
of its slice of every global batch, one in-place Allreduce sums them, and
every rank takes the same optimizer step.

    mpiexec -n 4 python -m mpi4py my_training.py

    from fastfc.distributed import DataParallelSolver
    solver = DataParallelSolver(model, data, update_rule="adam", batch_size=256, seed=0,
                                state_path="run.state.npz")   # batch_size: the global batch
    solver.train()

or, in an object-API loop (see DataParallel):

    parallel = DataParallel(model)              # parameters broadcast from rank 0
    for X, y in global_batches:                 # the same on every rank
        lo, hi = parallel.shard_bounds(len(X))  # also places dropout's masks at row lo
        loss = model._loss_into_grads(X[lo:hi], y[lo:hi])   # or forward/backward
        loss, stop = parallel.allreduce(loss, hi - lo, len(X))
        optimizer.step()

`python -m mpi4py` matters: it turns an uncaught exception on any rank into
MPI_Abort of the whole job, where a plain run would leave the other ranks
waiting in the next Allreduce for ever.

mpi4py is imported only when a communicator is needed (never by `import
fastfc`); rank/world_size read the launcher's environment without it.
"""
import hashlib
import json
import math
import os
import signal
import threading

import numpy as np

from .io import open_regular, write_atomically
from .layers import Dropout
from .solver import Solver

__all__ = ["launched_by_mpiexec", "rank", "world_size", "world", "shard_bounds", "check_same_arguments",
           "FlatGradients", "DataParallel", "DataParallelSolver", "launched_solver"]

# What MPICH's Hydra, Open MPI and PMIx launchers put in each rank's environment.
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def _environment_int(names, default):
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return default


def launched_by_mpiexec():
    """Whether this process is a rank started by mpiexec/mpirun (read from the
    environment: mpi4py is not imported)."""
    return any(name in os.environ for name in _RANK_VARIABLES)


def rank():
    """This process's rank (0 when not started by mpiexec)."""
    return _environment_int(_RANK_VARIABLES, 0)


def world_size():
    """The number of ranks (1 when not started by mpiexec)."""
    return _environment_int(_SIZE_VARIABLES, 1)


def world():
    """mpi4py's MPI.COMM_WORLD; ImportError saying how to install mpi4py."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("data-parallel training needs mpi4py and an MPI: pip install 'fastfc[mpi]' "
                          "(or pip install mpi4py mpich)") from None
    return MPI.COMM_WORLD


def shard_bounds(n, rank, world_size):
    """[lo, hi): rank's contiguous share of n rows; shares differ by at most one."""
    return n * rank // world_size, n * (rank + 1) // world_size


def check_same_arguments(comm, arguments):
    """ValueError on every rank unless every rank passes equal arguments
    (compared by a SHA-256 of their JSON): ranks started with different
    options would train different models while exchanging gradients."""
    digest = hashlib.sha256(json.dumps(arguments, sort_keys=True, default=repr).encode()).hexdigest()
    digests = comm.allgather(digest)
    differing = [r for r, d in enumerate(digests) if d != digests[0]]
    if differing:
        raise ValueError(f"ranks {differing} were started with other arguments than rank 0; "
                         "every rank must run the same command")
    return digest


class FlatGradients:
    """Re-homes the gradients of parameters as views into one contiguous
    buffer per dtype, so that one collective call moves them all. Each buffer
    ends with `extra` control slots (loss, stop flag) in the last buffer.

    Attributes: buffers (list of 1-d arrays), control (the last buffer's
    extra slots, a view).
    """

    def __init__(self, parameters, extra=2):
        by_dtype = {}
        for p in parameters:
            by_dtype.setdefault(p.data.dtype, []).append(p)
        if not by_dtype:
            raise ValueError("the model has no parameters to train")
        self.buffers = []
        dtypes = list(by_dtype)
        for i, dtype in enumerate(dtypes):
            params = by_dtype[dtype]
            size = sum(p.data.size for p in params) + (extra if i == len(dtypes) - 1 else 0)
            buffer = np.zeros(size, dtype=dtype)
            offset = 0
            for p in params:
                view = buffer[offset:offset + p.data.size].reshape(p.data.shape)
                view[...] = p.grad
                p.grad = view  # backward writes into p.grad in place: into the buffer
                offset += p.data.size
            self.buffers.append(buffer)
        self.control = self.buffers[-1][len(self.buffers[-1]) - extra:]
        self._gradient_parts = [b[:len(b) - (extra if b is self.buffers[-1] else 0)] for b in self.buffers]

    def scale(self, factor):
        """Multiplies every gradient by factor (in each buffer's dtype)."""
        for part in self._gradient_parts:
            part *= part.dtype.type(factor)

    def zero(self):
        for part in self._gradient_parts:
            part.fill(0)


class DataParallel:
    """Makes a model's training data-parallel over comm (default
    MPI.COMM_WORLD): its gradients become views into flat buffers
    (FlatGradients), its parameters are broadcast from rank 0, and each
    Dropout layer draws its mask from the global element offset of the
    rank's first row (set by shard_bounds): every rank draws the same seed,
    but the ranks' masks are the disjoint slices of the mask a one-process
    run draws for the whole global batch, so no two ranks share a mask.

    Inputs:
    - model: a Sequential (or anything with named_parameters())
    - comm: an mpi4py communicator
    - reduction: 'allreduce' (one in-place MPI Allreduce: for 2 ranks exactly
      the sum a + b) or 'ordered' (Allgather, then the ranks' gradients summed
      in rank order: bit-identical to a one-process run accumulating the
      shards in rank order, for any world size)
    """

    def __init__(self, model, comm=None, reduction="allreduce"):
        if reduction not in ("allreduce", "ordered"):
            raise ValueError(f"reduction must be 'allreduce' or 'ordered', got {reduction!r}")
        self.comm = world() if comm is None else comm
        self.rank, self.world_size = self.comm.Get_rank(), self.comm.Get_size()
        self.reduction = reduction
        self.model = model
        self.parameters = [p for _, p in model.named_parameters()]
        self.grads = FlatGradients(self.parameters)
        self._gathered = None
        self.dropout_layers = [layer for layer in getattr(model, "layers", ()) if isinstance(layer, Dropout)]
        self.broadcast_parameters()

    def broadcast_parameters(self):
        """Every rank's parameters become rank 0's."""
        for p in self.parameters:
            self.comm.Bcast(p.data, root=0)

    def shard_bounds(self, n):
        """[lo, hi) of this rank's rows of a global batch of n. Also sets every
        Dropout layer's first_row to lo, so that the forward of rows lo:hi
        draws their slice of the global batch's masks."""
        lo, hi = shard_bounds(n, self.rank, self.world_size)
        for layer in self.dropout_layers:
            layer.first_row = lo
        return lo, hi

    def allreduce(self, loss, rows, total_rows, stop=False):
        """Turns this rank's gradients (the mean over its rows) into the global
        batch's mean, identical on every rank: each is scaled by rows /
        total_rows and the ranks' are summed. The loss and the stop flag ride
        in the same buffer. Returns (the global batch's loss, whether any rank
        asked to stop). A rank without rows passes loss 0 and zero gradients."""
        factor = rows / total_rows
        if rows == 0:
            self.grads.zero()
        else:
            self.grads.scale(factor)
        control = self.grads.control
        control[0] = loss * factor if rows else 0.0
        control[1] = 1.0 if stop else 0.0
        if self.reduction == "allreduce":
            from mpi4py import MPI
            for buffer in self.grads.buffers:
                self.comm.Allreduce(MPI.IN_PLACE, buffer)
        else:
            self._ordered_sum()
        return float(control[0]), bool(control[1] > 0)

    def _ordered_sum(self):
        if self._gathered is None:
            self._gathered = [np.empty((self.world_size, len(b)), b.dtype) for b in self.grads.buffers]
        for buffer, gathered in zip(self.grads.buffers, self._gathered):
            self.comm.Allgather(buffer, gathered)
            np.copyto(buffer, gathered[0])
            for row in gathered[1:]:
                buffer += row


class DataParallelSolver(Solver):
    """A Solver whose every step is data-parallel over MPI (see DataParallel).

    Takes the Solver's arguments, with batch_size the global batch (each rank
    computes its share of each one), plus:
    - comm: an mpi4py communicator (default MPI.COMM_WORLD)
    - reduction: 'allreduce' or 'ordered' (see DataParallel)
    - state_path: rank 0 writes the training state here (atomically) at each
      epoch's end and when a stop (Ctrl-C, request_stop) ends a run
      mid-epoch: parameters, optimizer state, epoch, histories, random
      states, and the stopped epoch's order and batch; resume=True continues
      from it, bit for bit, with the same world size
    - arguments: what every rank must agree on besides the Solver's own
      settings (a command line, say); compared by hash at the start

    seed must be an int (every rank draws the same shuffle order from it).
    A NaN loss on any rank raises FloatingPointError on every rank at the
    same step; Ctrl-C (or request_stop()) on any rank stops every rank at the
    next step with KeyboardInterrupt. Only rank 0 writes checkpoint_name.
    Needs a named update_rule (the fused optimizers).
    """

    def __init__(self, model, data, comm=None, reduction="allreduce", state_path=None, resume=False,
                 arguments=None, **kwargs):
        seed = kwargs.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"data-parallel training needs an int seed (every rank draws the same "
                             f"order from it), got {seed!r}")
        super().__init__(model, data, **kwargs)
        if self.optimizer is None:
            raise ValueError("data-parallel training needs a named update_rule, not a callable")
        comm = world() if comm is None else comm
        # What changes the arithmetic, not where or how it reports.
        reporting = ("augment", "on_epoch_end", "verbose", "print_every", "checkpoint_name")
        settings = {k: v for k, v in kwargs.items() if k not in reporting}
        settings.update(arguments=arguments, world_size=comm.Get_size(), reduction=reduction,
                        parameters=[(n, p.data.shape, str(p.data.dtype)) for n, p in self._named.items()],
                        data=[(k, np.shape(data[k])) for k in ("X_train", "y_train", "X_val", "y_val")])
        self.arguments_digest = check_same_arguments(comm, settings)
        self.parallel = DataParallel(model, comm, reduction)
        self.state_path = state_path
        self._stop_requested = False
        self._resume_at = None  # (order, batch, loss so far) of the epoch a resumed run continues
        self._batch_state = None  # where and with which random states the current batch began
        if resume:
            if state_path is None:
                raise ValueError("resume needs state_path")
            self._load_state()

    @property
    def rank(self):
        return self.parallel.rank

    def request_stop(self):
        """Ask every rank to stop at the next step (what Ctrl-C does)."""
        self._stop_requested = True

    def _step(self, X_batch, y_batch):
        lo, hi = self.parallel.shard_bounds(len(X_batch))
        loss = 0.0
        if hi > lo:
            X_local, y_local = X_batch[lo:hi], y_batch[lo:hi]
            if self._loss_into_grads is not None:
                loss = self._loss_into_grads(X_local, y_local)
            else:
                loss, grads = self.model.loss(X_local, y_local)
                for name, p in self._named.items():
                    p.grad[...] = grads[name]
        loss, stop = self.parallel.allreduce(float(loss), hi - lo, len(X_batch), self._stop_requested)
        if stop:  # before this batch's update: a resumed run starts with it
            if self.state_path is not None and self.rank == 0:
                self._save_state(self._batch_state)
            raise KeyboardInterrupt
        if math.isfinite(loss):  # else every rank raises FloatingPointError at this same step
            self.optimizer.step()
        return loss

    def train(self):
        """Solver.train on every rank; Ctrl-C only requests a stop, which the
        next step's reduction carries to every rank."""
        install = (threading.current_thread() is threading.main_thread()
                   and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if install:
            signal.signal(signal.SIGINT, lambda signum, frame: self.request_stop())
        try:
            super().train()
        finally:
            self._stop_requested = False
            if install:
                signal.signal(signal.SIGINT, signal.default_int_handler)

    def _write_checkpoint(self):
        if self.rank == 0:
            super()._write_checkpoint()

    def _epoch_start(self, n):
        if self._resume_at is not None:
            resume_at, self._resume_at = self._resume_at, None
            return resume_at
        return super()._epoch_start(n)

    def _batch_start(self, epoch, order, it, total_loss):
        if self.state_path is not None and self.rank == 0:
            self._batch_state = {"order": order, "batch": it, "loss_so_far": total_loss,
                                 "random": [g.bit_generator.state for g in self._generators()]}

    def _end_epoch(self, epoch, train_loss, samples_per_s, started):
        super()._end_epoch(epoch, train_loss, samples_per_s, started)
        if self.state_path is not None and self.rank == 0:
            self._save_state()

    # ---- training state -----------------------------------------------------------

    def _save_state(self, batch_state=None):
        """Writes the training state (Solver.state_dict, with the world size
        and the arguments' digest): at an epoch's end, or (batch_state, from
        _batch_start) where a stop left an epoch, with the random states the
        stopped batch began with."""
        arrays = self.state_dict()
        meta = json.loads(str(arrays["meta"]))
        meta.update(position=None, world_size=self.parallel.world_size, arguments=self.arguments_digest)
        if batch_state is not None:
            meta["random"] = batch_state["random"]
            meta["position"] = {"batch": batch_state["batch"], "loss_so_far": batch_state["loss_so_far"]}
            arrays["order"] = batch_state["order"]
        arrays["meta"] = np.array(json.dumps(meta, default=float))
        write_atomically(self.state_path, lambda f: np.savez(f, **arrays))

    def _load_state(self):
        """Rank 0 reads the state; every rank gets it by broadcast (no shared
        file system needed)."""
        state = None
        if self.rank == 0:
            try:
                with open_regular(self.state_path) as f, np.load(f, allow_pickle=False) as archive:
                    state = {key: archive[key] for key in archive.files}
                state["meta"] = json.loads(str(state["meta"]))
            except (OSError, ValueError, KeyError) as exc:
                state = f"cannot read the training state {self.state_path}: {exc}"
        state = self.parallel.comm.bcast(state, root=0)
        if isinstance(state, str):
            raise ValueError(state)
        meta = state["meta"]
        if meta["world_size"] != self.parallel.world_size:
            raise ValueError(f"{self.state_path} was written by a run on {meta['world_size']} ranks; "
                             f"resume it on as many (this run has {self.parallel.world_size})")
        if meta["arguments"] != self.arguments_digest:
            raise ValueError(f"{self.state_path} was written by a run with other settings; resume "
                             "needs the same ones")
        self.load_state_dict(dict(state, meta=np.array(json.dumps(meta))))
        if meta.get("position") is not None:
            position = meta["position"]
            self._resume_at = (state["order"], position["batch"], position["loss_so_far"])


def launched_solver(model, data, state_path=None, resume=False, arguments=None, **kwargs):
    """Solver(model, data, **kwargs), or, in a rank started by mpiexec, a
    DataParallelSolver over MPI.COMM_WORLD with the same arguments (what
    `fastfc train` builds). state_path and resume are for data-parallel runs
    only; ImportError saying how to install mpi4py when mpiexec started this
    process without it."""
    if not launched_by_mpiexec():
        if state_path is not None or resume:
            raise ValueError("a training state (state_path, resume) is kept by data-parallel runs only: "
                             "start them with mpiexec -n N python -m mpi4py ...")
        return Solver(model, data, **kwargs)
    return DataParallelSolver(model, data, comm=world(), state_path=state_path, resume=resume,
                              arguments=arguments, **kwargs)
