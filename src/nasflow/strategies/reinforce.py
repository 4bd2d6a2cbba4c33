"""REINFORCE with an LSTM controller (Zoph & Le, ICLR 2017), the RL baseline of NAS-Bench-201."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nasflow.errors import ConfigError
from nasflow.space.architecture import Architecture
from nasflow.strategies.base import Strategy
from nasflow.strategies.common import scalar_fitness
from nasflow.strategies.fitness import Scored
from nasflow.trial import FrozenTrial

#: how many extra policy-guided mutations are tried once the controller keeps repeating itself
_MUTATION_TRIES = 50
#: how many uniform draws are tried for an unseen architecture before accepting a repeat
_RANDOM_TRIES = 200
#: policy draws made at once; the first acceptable one is proposed
_DRAW_BATCH = 8
#: torch's default initialisation would draw from the global generator; ENAS uses this range
_INIT_RANGE = 0.1


class _Controller:
    """Autoregressive policy over a fixed sequence of categorical decisions.

    Step ``k`` feeds the embedding of the choice made at step ``k - 1`` (a learned start vector at
    step 0) through one LSTM cell and reads decision ``k``'s logits from its own linear head.
    With a ``bound``, logits are squashed to ``bound * tanh(logits / bound)`` (ENAS's "tanh
    constant"), so no choice can become more than ``exp(2 * bound)`` times likelier than another.
    torch is imported only when a controller is built, not when the strategy module is.
    """

    def __init__(self, cardinalities: list[int], hidden: int, seed: int, bound: float | None) -> None:
        import torch
        from torch import nn

        self.torch = torch
        self.cardinalities = cardinalities
        self.bound = bound
        generator = torch.Generator().manual_seed(seed)
        # Module constructors initialise from the global generator; fork_rng restores it afterwards
        # and the explicit re-initialisation below makes the weights depend on ``seed`` only.
        with torch.random.fork_rng(devices=[]):
            self.start = nn.Parameter(torch.zeros(1, hidden))
            self.embeddings = nn.ModuleList(nn.Embedding(c, hidden) for c in cardinalities)
            self.cell = nn.LSTMCell(hidden, hidden)
            self.heads = nn.ModuleList(nn.Linear(hidden, c) for c in cardinalities)
        self.parameters = [self.start]
        for module in (self.embeddings, self.cell, self.heads):
            self.parameters.extend(module.parameters())
        with torch.no_grad():
            for parameter in self.parameters:
                parameter.uniform_(-_INIT_RANGE, _INIT_RANGE, generator=generator)
            for head in self.heads:
                head.bias.zero_()  # a uniform policy at the start
        self.arrays: dict[str, np.ndarray] = {
            "start": self.start.detach().numpy(),
            **{f"{n}": p.detach().numpy() for n, p in self.cell.named_parameters()},
        }
        for step, (embedding, head) in enumerate(zip(self.embeddings, self.heads)):
            self.arrays[f"embedding{step}"] = embedding.weight.detach().numpy()
            self.arrays[f"head{step}.weight"] = head.weight.detach().numpy()
            self.arrays[f"head{step}.bias"] = head.bias.detach().numpy()

    def step_logits(self, previous: Any, step: int, state: Any) -> tuple[Any, Any]:
        inputs = (
            self.start.expand(previous.shape[0], -1) if step == 0 else self.embeddings[step - 1](previous)
        )
        state = self.cell(inputs, state)
        logits = self.heads[step](state[0])
        if self.bound is not None:
            logits = self.bound * self.torch.tanh(logits / self.bound)
        return logits, state

    def evaluate(self, choices: Any) -> tuple[Any, Any]:
        """Summed log-probability and entropy of each row of ``choices`` (batch x decisions)."""
        torch = self.torch
        log_prob = torch.zeros(choices.shape[0])
        entropy = torch.zeros(choices.shape[0])
        state = None
        previous = choices[:, 0]
        for step in range(len(self.cardinalities)):
            logits, state = self.step_logits(previous, step, state)
            log_p = torch.log_softmax(logits, dim=-1)
            log_prob = log_prob + log_p.gather(1, choices[:, step : step + 1]).squeeze(1)
            entropy = entropy - (log_p.exp() * log_p).sum(dim=-1)
            previous = choices[:, step]
        return log_prob, entropy

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` sequences of choice indices (one per row), drawn with ``rng``.

        The same network as :meth:`evaluate`, run in numpy on views of the weights: a batch costs
        tens of microseconds instead of a millisecond of per-op torch overhead, which matters because
        a converged policy is redrawn many times to find an unseen architecture.
        """
        w_ih, w_hh = self.arrays["weight_ih"].T, self.arrays["weight_hh"].T
        bias = self.arrays["bias_ih"] + self.arrays["bias_hh"]
        size = w_hh.shape[0]
        hidden = np.zeros((count, size), dtype=np.float32)
        memory = np.zeros_like(hidden)
        inputs = np.repeat(self.arrays["start"], count, axis=0)
        choices = np.zeros((count, len(self.cardinalities)), dtype=np.int64)
        for step, cardinality in enumerate(self.cardinalities):
            gates = inputs @ w_ih + hidden @ w_hh + bias
            memory = _sigmoid(gates[:, size : 2 * size]) * memory + _sigmoid(gates[:, :size]) * np.tanh(
                gates[:, 2 * size : 3 * size]
            )
            hidden = _sigmoid(gates[:, 3 * size :]) * np.tanh(memory)
            logits = (hidden @ self.arrays[f"head{step}.weight"].T + self.arrays[f"head{step}.bias"]).astype(
                float
            )
            if self.bound is not None:
                logits = self.bound * np.tanh(logits / self.bound)
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            cumulative = np.cumsum(probs, axis=1)
            targets = rng.random(count) * cumulative[:, -1]
            index = (cumulative <= targets[:, None]).sum(axis=1)
            choices[:, step] = np.minimum(index, cardinality - 1)
            inputs = self.arrays[f"embedding{step}"][choices[:, step]]
        return choices


class _Adam:
    """Adam (Kingma & Ba 2015) applied in numpy to the controller's weights in place.

    torch's own Adam runs its element-wise ops on OpenMP threads for tensors of a few thousand
    entries; on a busy machine each such op can wait milliseconds for a thread, and the study
    process must not change torch's thread count. The arithmetic is the textbook update.
    """

    def __init__(self, parameters: list[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.parameters = parameters
        self.lr = lr
        self.betas = betas
        self.eps = 1e-8
        self.steps = 0
        self.first = [np.zeros(tuple(p.shape), dtype=np.float32) for p in parameters]
        self.second = [np.zeros(tuple(p.shape), dtype=np.float32) for p in parameters]

    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        scale = self.lr * math.sqrt(1 - beta2**self.steps) / (1 - beta1**self.steps)
        for parameter, first, second in zip(self.parameters, self.first, self.second):
            if parameter.grad is None:
                continue
            grad = parameter.grad.numpy()
            first *= beta1
            first += (1 - beta1) * grad
            second *= beta2
            second += (1 - beta2) * grad * grad
            weights = parameter.detach().numpy()  # shares memory with the parameter
            weights -= (scale * first / (np.sqrt(second) + self.eps)).astype(np.float32)
            parameter.grad = None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|, unlike 1 / (1 + exp(-x))


class ReinforceStrategy(Strategy):
    """An LSTM controller samples architectures decision by decision and is trained with REINFORCE.

    Each told trial with objective values is one learning step: reward = ``scalar_fitness`` of the
    trial, advantage = reward - exponential moving average of past rewards (optionally divided by the
    moving standard deviation), loss = -advantage * log pi(arch) - entropy_weight * entropy, one Adam
    step per ``batch_size`` trials. Proposals that are invalid or (with ``dedupe``) already proposed
    are redrawn from the policy up to ``max_resamples`` times; after that a single-decision mutation of
    the policy's last draw, then a uniform sample, is proposed instead. Learning always uses the
    log-probability of what was actually evaluated, so such fallbacks (and trials the strategy did not
    ask for) are learnt from as well.

    The state is the history of (choice indices, reward) of the learning steps: loading it rebuilds the
    controller from its seed and replays the updates, which reproduces weights, Adam moments and the
    baseline bit for bit, so a resumed search continues exactly.

    Args:
        hidden_size: width of the LSTM cell and of the choice embeddings.
        lr: Adam learning rate. Much larger than Zoph & Le's because the budgets here are a few
            hundred architectures, not tens of thousands.
        baseline_decay: decay of the moving-average reward baseline (0 <= decay < 1).
        entropy_weight: weight of the entropy bonus that keeps the policy from collapsing early.
        tanh_constant: bound on the logits (``c * tanh(logits / c)``, from ENAS), so the policy can
            never become deterministic; None leaves the logits free.
        normalize_rewards: divide advantages by the moving standard deviation of the rewards, which
            makes ``lr`` independent of the objective's units.
        batch_size: trials per policy update.
        max_resamples: policy draws tried per proposal before falling back (see above).
        dedupe: avoid proposing an architecture whose canonical key was proposed before.
    """

    name = "reinforce"

    def __init__(
        self,
        hidden_size: int = 32,
        lr: float = 0.02,
        baseline_decay: float = 0.9,
        entropy_weight: float = 0.0,
        tanh_constant: float | None = 2.5,
        normalize_rewards: bool = True,
        batch_size: int = 1,
        max_resamples: int = 100,
        dedupe: bool = True,
    ) -> None:
        _check_int("hidden_size", hidden_size, 1)
        _check_int("batch_size", batch_size, 1)
        _check_int("max_resamples", max_resamples, 0)
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"lr must be a positive number, got {lr!r}")
        if not (isinstance(baseline_decay, (int, float)) and 0 <= baseline_decay < 1):
            raise ConfigError(f"baseline_decay must be in [0, 1), got {baseline_decay!r}")
        if not (
            isinstance(entropy_weight, (int, float)) and math.isfinite(entropy_weight) and entropy_weight >= 0
        ):
            raise ConfigError(f"entropy_weight must be a non-negative number, got {entropy_weight!r}")
        if tanh_constant is not None and not (
            isinstance(tanh_constant, (int, float)) and math.isfinite(tanh_constant) and tanh_constant > 0
        ):
            raise ConfigError(f"tanh_constant must be None or a positive number, got {tanh_constant!r}")
        self.hidden_size = hidden_size
        self.lr = float(lr)
        self.baseline_decay = float(baseline_decay)
        self.entropy_weight = float(entropy_weight)
        self.tanh_constant = None if tanh_constant is None else float(tanh_constant)
        self.normalize_rewards = bool(normalize_rewards)
        self.batch_size = batch_size
        self.max_resamples = max_resamples
        self.dedupe = bool(dedupe)

    # -- set-up and learning state -------------------------------------------------------------
    def setup(self, space: Any, objectives: Any, seed: int | None) -> None:
        super().setup(space, objectives, seed)
        self._decisions = space.decisions()
        self._init_seed = int(self.rng.integers(2**63 - 1))
        self._seen: set[str] = set()
        self._rejected: set[tuple[int, ...]] = set()  # a cache of draws that failed _acceptable
        self._reset_learning()

    def _reset_learning(self) -> None:
        self._controller = _Controller(
            [len(c) for c in self._decisions.values()], self.hidden_size, self._init_seed, self.tanh_constant
        )
        self._optimizer = _Adam(self._controller.parameters, lr=self.lr)
        self._history: list[tuple[list[int], float, bool]] = []
        self._buffer: list[tuple[list[int], float]] = []
        self._baseline: float | None = None
        self._variance = 0.0
        self._steps = 0
        self._worst = math.inf  # lowest feasible reward, the stand-in for infeasible trials

    # -- ask ---------------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._propose() for _ in range(n)]

    def _propose(self) -> Architecture:
        arch = None
        drawn = 0
        while drawn <= self.max_resamples:
            count = min(_DRAW_BATCH, self.max_resamples + 1 - drawn)
            for row in self._controller.sample(self.rng, count):
                key = tuple(row.tolist())
                if key in self._rejected:  # a converged policy redraws the same few sequences
                    continue
                arch = self._decode(row)
                if self._acceptable(arch):
                    if self.dedupe:
                        self._rejected.add(key)  # proposed now, so never acceptable again
                    return self._remember(arch)
                self._rejected.add(key)  # invalid or seen: stays so, _seen only grows
            drawn += count
        # The policy keeps repeating itself (it has converged) or keeps drawing invalid cells:
        # stay close to where it points before giving up on it entirely.
        if arch is not None and self.space.is_valid(arch):
            for _ in range(_MUTATION_TRIES):
                child = self.space.mutate(arch, self.rng)
                if self._acceptable(child):
                    return self._remember(child)
        for _ in range(_RANDOM_TRIES):
            arch = self.space.sample(self.rng)
            if self._acceptable(arch):
                break
        return self._remember(arch)

    def _acceptable(self, arch: Architecture) -> bool:
        if not self.space.is_valid(arch):
            return False
        return not self.dedupe or self.space.canonical(arch) not in self._seen

    def _remember(self, arch: Architecture) -> Architecture:
        if self.dedupe:
            self._seen.add(self.space.canonical(arch))
        return arch

    def _decode(self, choices: np.ndarray) -> Architecture:
        return Architecture({k: c[int(i)] for (k, c), i in zip(self._decisions.items(), choices)})

    # -- tell --------------------------------------------------------------------------------
    def tell(self, trial: FrozenTrial) -> None:
        scored = Scored.from_trial(trial, self.objectives)
        if scored is None or not self.space.is_valid(trial.arch):
            return
        choices = [int(i) for i in self.space.encode(self.space.validate(trial.arch), "index")]
        if self.dedupe:
            self._seen.add(self.space.canonical(trial.arch))
        self._learn(choices, scalar_fitness(scored), scored.violation > 0)

    def _learn(self, choices: list[int], reward: float, infeasible: bool) -> None:
        self._history.append((choices, reward, infeasible))
        if infeasible:
            # The violation penalty is huge; a bounded stand-in keeps the baseline and scale usable.
            reward = self._worst if math.isfinite(self._worst) else (self._baseline or 0.0)
        else:
            self._worst = min(self._worst, reward)
        if self._baseline is None:
            self._baseline = reward
        advantage = reward - self._baseline
        self._variance = self.baseline_decay * self._variance + (1 - self.baseline_decay) * advantage**2
        self._steps += 1
        self._baseline += (1 - self.baseline_decay) * (reward - self._baseline)
        if self.normalize_rewards:
            # bias-corrected like Adam's moments: the average starts at 0, which would inflate early steps
            variance = self._variance / (1 - self.baseline_decay**self._steps)
            advantage /= math.sqrt(variance) + 1e-8
        self._buffer.append((choices, advantage))
        if len(self._buffer) >= self.batch_size:
            self._update()

    def _update(self) -> None:
        torch = self._controller.torch
        size = len(self._buffer)
        # One row at a time: with a batch dimension above 1 torch hands these tiny matrix products to
        # its thread pool, and on a busy machine every such hand-off can stall for tens of ms.
        for choices, advantage in self._buffer:
            log_prob, entropy = self._controller.evaluate(torch.tensor([choices], dtype=torch.long))
            loss = (-advantage * log_prob[0] - self.entropy_weight * entropy[0]) / size
            loss.backward()  # gradients add up over the rows
        self._buffer = []
        self._optimizer.step()

    # -- inspection ----------------------------------------------------------------------------
    def log_prob(self, arch: Architecture) -> float:
        """Log-probability that the controller draws ``arch`` (before any resampling)."""
        torch = self._controller.torch
        choices = torch.tensor([[int(i) for i in self.space.encode(self.space.validate(arch), "index")]])
        with torch.no_grad():
            return float(self._controller.evaluate(choices)[0][0])

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "init_seed": self._init_seed,
            "history": [[c, r, f] for c, r, f in self._history],
            "seen": sorted(self._seen),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._init_seed = int(state["init_seed"])
        self._seen = set(state["seen"])
        self._rejected = set()
        self._reset_learning()
        for choices, reward, infeasible in state["history"]:
            self._learn([int(i) for i in choices], float(reward), bool(infeasible))


def _check_int(label: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{label} must be an integer >= {low}, got {value!r}")
