"""Evaluate on a Ray cluster: a local Ray instance, or an existing cluster by address.

Ray (Moritz et al., 2018, "Ray: A Distributed Framework for Emerging AI Applications") schedules each
evaluation as one task with the CPUs, GPUs and memory a trial asks for. Ray is imported only when a
:class:`RayExecutor` is created, so ``import nasflow`` never needs it.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from concurrent.futures import Future, InvalidStateError
from typing import Any

from nasflow.errors import ConfigError
from nasflow.estimators.base import EvalContext, Evaluator
from nasflow.execution.base import Executor, Outcome, run_evaluation
from nasflow.space.architecture import Architecture

INSTALL_HINT = "the Ray executor needs Ray: pip install 'nasflow[ray]'"

#: Ray's errors that mean the worker, its node or an object it needed went away: the evaluation
#: itself did not fail, so the study may run it again (looked up by name: they vary across versions)
LOST_ERRORS = (
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "RayActorError",
    "ObjectLostError",  # also OwnerDiedError, ObjectFetchTimedOutError, ObjectReconstructionFailedError
    "OutOfMemoryError",  # Ray's memory monitor killed the worker, often for its neighbours' sake
    "TaskUnschedulableError",
    "TaskPlacementGroupRemoved",
    "RuntimeEnvSetupError",
)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def _evaluate_on_worker(
    evaluator: Evaluator, arch: Architecture, context: EvalContext, threads: int, gpu: bool
) -> Outcome:
    """Run one evaluation inside a Ray worker, limited to the trial's share of the CPU cores."""
    import torch

    # Ray runs several tasks on one machine; without this each would start one thread per core.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    if gpu and context.device == "cpu":
        # Ray shows the task only the GPUs it was given, so "cuda" is the trial's own GPU.
        context.device = "cuda"
    try:
        return run_evaluation(evaluator, arch, context)
    except SystemExit as exc:
        # Ray would count sys.exit() as a crashed worker and the study would retry a trial that
        # fails the same way every time: it is the evaluation's failure, not the worker's.
        return Outcome(None, f"the evaluation called sys.exit({exc.code!r})")


def _reason(exc: BaseException) -> str:
    """The first line of a Ray error, which names what died."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class RayExecutor(Executor):
    """Run each evaluation as a Ray task with the resources one trial needs.

    With ``address=None`` a local Ray instance is started here and stopped by :meth:`shutdown`;
    with ``"auto"`` or ``"HOST:PORT"`` the executor connects to a running cluster and only disconnects
    from it. If Ray is already initialised in this process, that instance is used and left running.

    Ray does not retry tasks itself (``max_retries=0``): when a worker or node dies, the trial's
    outcome is marked ``lost`` and the study decides whether to run it again, so retries are counted
    and recorded in one place for every executor.

    Args:
        address: None for a local instance, ``"auto"`` or ``"HOST:PORT"`` for an existing cluster.
        trial_cpus: CPUs reserved per trial; also the number of torch threads a trial uses.
        trial_gpus: GPUs reserved per trial (fractions share a GPU).
        trial_memory_mb: memory reserved per trial, for Ray's scheduler (None: no reservation).
        max_workers: trials at once; by default as many as the cluster's CPUs (and GPUs) fit.
        num_cpus: CPUs of a local instance (default: this machine's cores); only with ``address=None``.

    Raises:
        ConfigError: Ray is not installed, the address cannot be reached, or the cluster has fewer
            CPUs or GPUs than one trial asks for.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        trial_cpus: float = 1.0,
        trial_gpus: float = 0.0,
        trial_memory_mb: float | None = None,
        max_workers: int | None = None,
        num_cpus: int | None = None,
    ) -> None:
        _check_settings(trial_cpus, trial_gpus, trial_memory_mb, max_workers, num_cpus, address)
        ray = _import_ray()
        self._ray = ray
        self.address = address
        self.trial_cpus = float(trial_cpus)
        self.trial_gpus = float(trial_gpus)
        self.trial_memory_mb = trial_memory_mb
        self._owns_connection = False  # True when this executor called ray.init and must undo it
        if not ray.is_initialized():
            self._connect(ray, address, num_cpus)
            self._owns_connection = True
        try:
            nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
            fits = trials_that_fit(nodes, self.trial_cpus, self.trial_gpus, trial_memory_mb)
            self.max_workers = max_workers or fits
        except ConfigError:
            self._disconnect()
            raise
        memory = None if trial_memory_mb is None else int(trial_memory_mb * 2**20)
        self._task = ray.remote(_evaluate_on_worker).options(
            num_cpus=self.trial_cpus, num_gpus=self.trial_gpus, memory=memory, max_retries=0
        )
        self._threads = max(1, int(self.trial_cpus))
        # id(evaluator) -> (evaluator, its object-store reference); the evaluator is kept so that
        # its id cannot be reused by another object while it is cached
        self._stored: dict[int, tuple[Evaluator, Any]] = {}
        self._running: dict[Any, Future[Outcome]] = {}  # ObjectRef -> the future handed out
        self._lock = threading.Lock()

    # -- set-up ----------------------------------------------------------------------------
    @staticmethod
    def _connect(ray: Any, address: str | None, num_cpus: int | None) -> None:
        quiet = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if address is None:
            # "local" starts a new instance even when RAY_ADDRESS points at a cluster.
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **quiet)
            return
        hint = (
            "start it with 'ray start --head' on the head node and pass its address (HOST:PORT, or "
            "'auto' on a node of the cluster), or use address=None for a local Ray instance"
        )
        if address != "auto":
            _check_reachable(address, hint)
        try:
            ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError or ValueError here
            raise ConfigError(
                f"cannot connect to the Ray cluster at {address!r} ({_reason(exc)}); {hint}"
            ) from None

    # -- running ---------------------------------------------------------------------------
    def _stored_evaluator(self, evaluator: Evaluator) -> Any:
        """The evaluator's object-store reference, put there once rather than sent with every trial."""
        entry = self._stored.get(id(evaluator))
        if entry is None:
            try:
                entry = (evaluator, self._ray.put(evaluator))
            except Exception as exc:
                cause = exc.__cause__ or exc  # Ray wraps the pickling error in a long report
                raise ConfigError(
                    f"the evaluator cannot be sent to Ray workers ({type(cause).__name__}: "
                    f"{_reason(cause)}); make it picklable "
                    "(e.g. define its function at module level) or use the inline executor"
                ) from None
            self._stored[id(evaluator)] = entry
        return entry[1]

    def submit(self, evaluator: Evaluator, arch: Architecture, context: EvalContext) -> Future[Outcome]:
        """Start evaluating ``arch`` as a Ray task; the future yields an :class:`Outcome`."""
        stored = self._stored_evaluator(evaluator)
        try:
            ref = self._task.remote(stored, arch, context, self._threads, self.trial_gpus > 0)
        except Exception as exc:  # e.g. a pruner in the context that cannot be pickled
            cause = exc.__cause__ or exc
            raise ConfigError(
                f"cannot send the evaluation to Ray workers ({type(cause).__name__}: {_reason(cause)})"
            ) from None
        future: Future[Outcome] = Future()
        with self._lock:
            self._running[ref] = future
        ref.future().add_done_callback(lambda done: self._settle(ref, future, done))
        return future

    def _settle(self, ref: Any, future: Future[Outcome], done: Future[Any]) -> None:
        """Turn the finished Ray task into an Outcome (called on Ray's thread)."""
        with self._lock:
            self._running.pop(ref, None)
        try:
            result = done.result()
        except BaseException as exc:  # noqa: BLE001 - every Ray error becomes an outcome
            result = self._outcome_of(exc)
        try:
            future.set_result(result)
        except InvalidStateError:  # cancelled by shutdown(cancel=True) meanwhile
            pass

    def _outcome_of(self, exc: BaseException) -> Outcome:
        exceptions = self._ray.exceptions
        if isinstance(exc, exceptions.RayTaskError):
            # Something escaped run_evaluation (it catches ordinary exceptions) or the task never
            # ran it; Ray keeps the original exception as the cause.
            exc = getattr(exc, "cause", None) or exc
            if isinstance(exc, exceptions.RaySystemError):
                # Typically the worker could not unpickle the evaluator: a module only the driver has.
                return Outcome(
                    None,
                    f"the Ray worker could not load the evaluation ({_reason(exc)}); install the "
                    "modules it needs on every node, or ship them with Ray's runtime_env",
                )
            if not isinstance(exc, exceptions.RayError):
                return Outcome(None, f"{type(exc).__name__}: {_reason(exc)}")
        if isinstance(exc, exceptions.TaskCancelledError):
            return Outcome(None, "the Ray task was cancelled")
        lost = tuple(getattr(exceptions, name) for name in LOST_ERRORS if hasattr(exceptions, name))
        if isinstance(exc, lost):
            return Outcome(None, f"Ray worker lost: {type(exc).__name__}: {_reason(exc)}", lost=True)
        return Outcome(None, f"Ray error: {type(exc).__name__}: {_reason(exc)}")

    def shutdown(self, cancel: bool = False) -> None:
        """Wait for (or with ``cancel`` stop) running trials, then leave Ray as it was found.

        A local instance started here is stopped; a cluster this executor connected to is only
        disconnected from; a Ray instance that was running before is left running.
        """
        with self._lock:
            running = dict(self._running)
        if cancel:
            for ref, future in running.items():
                future.cancel()
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - the task may have finished meanwhile
                    pass
        else:
            for future in running.values():
                future.exception()  # wait; errors are inside the outcome
        self._stored.clear()
        self._disconnect()

    def _disconnect(self) -> None:
        if self._owns_connection and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_connection = False


def trials_that_fit(
    nodes: list[dict[str, float]],
    trial_cpus: float,
    trial_gpus: float = 0.0,
    trial_memory_mb: float | None = None,
) -> int:
    """How many trials a cluster runs at once, given each alive node's resources (Ray's names).

    A Ray task runs on one node, so a trial must fit on the largest node, and each node holds as many
    trials as its CPUs (and GPUs, and memory when reserved) allow.

    Raises:
        ConfigError: no node is large enough for one trial (Ray would wait for one forever).
    """
    asked = {"CPU": trial_cpus, "GPU": trial_gpus, "memory": (trial_memory_mb or 0.0) * 2**20}
    asked = {name: amount for name, amount in asked.items() if amount > 0}
    units = {"CPU": ("trial_cpus", "CPUs", 1.0), "GPU": ("trial_gpus", "GPUs", 1.0)}
    units["memory"] = ("trial_memory_mb", "MB of memory", 2**-20)
    for name, amount in asked.items():
        largest = max((node.get(name, 0.0) for node in nodes), default=0.0)
        if amount > largest:
            setting, unit, scale = units[name]
            raise ConfigError(
                f"{setting}={amount * scale:g} but the largest node of the Ray cluster has "
                f"{largest * scale:g} {unit}; ask for at most that per trial or add a larger node"
            )
    # The epsilon keeps e.g. 0.1 CPU per trial on 0.7 CPUs at 7 despite floating-point rounding.
    per_node = [min(math.floor(node.get(n, 0.0) / a + 1e-9) for n, a in asked.items()) for node in nodes]
    return max(1, sum(per_node))


def _check_reachable(address: str, hint: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens at: Ray itself would retry for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not 'auto' or 'HOST:PORT' (e.g. '10.0.0.5:6379')")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r} ({exc}); {hint}") from None


def _check_settings(
    trial_cpus: float,
    trial_gpus: float,
    trial_memory_mb: float | None,
    max_workers: int | None,
    num_cpus: int | None,
    address: str | None,
) -> None:
    """Reject impossible resource requests before starting or contacting Ray."""
    if not isinstance(trial_cpus, (int, float)) or not trial_cpus > 0:
        raise ConfigError(f"trial_cpus must be a number > 0, got {trial_cpus!r}")
    if not isinstance(trial_gpus, (int, float)) or not trial_gpus >= 0:
        raise ConfigError(f"trial_gpus must be a number >= 0, got {trial_gpus!r}")
    if trial_gpus > 1 and trial_gpus != int(trial_gpus):
        raise ConfigError(f"trial_gpus above 1 must be a whole number (Ray's rule), got {trial_gpus!r}")
    if trial_memory_mb is not None and not trial_memory_mb > 0:
        raise ConfigError(f"trial_memory_mb must be > 0 or None, got {trial_memory_mb!r}")
    if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
        raise ConfigError(f"max_workers must be an integer >= 1 or None, got {max_workers!r}")
    if num_cpus is not None:
        if address is not None:
            raise ConfigError("num_cpus sizes a local Ray instance; it cannot be used with an address")
        if not isinstance(num_cpus, int) or num_cpus < 1:
            raise ConfigError(f"num_cpus must be an integer >= 1, got {num_cpus!r}")
