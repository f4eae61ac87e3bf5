"""Learning-rate schedules: the learning rate eta as a function of the training step.

The trainer calls ``schedule.start(base_rate, total_steps, steps_per_epoch)`` once,
then ``schedule.rate(step)`` before every mini-batch (``step`` counts batches from 0
over the whole run) and ``schedule.end_epoch(monitored_value)`` after every epoch
(only reduce-on-plateau uses it). Notation: eta0 = the base learning rate,
s = step, e = s // steps_per_epoch (the epoch, from 0), S = total steps.

    constant      eta = eta0
    step          eta = eta0 * gamma^floor(e / step_size)
    exponential   eta = eta0 * gamma^e
    cosine        warm-up (s < W):  eta = eta0 (s + 1) / W
                  then              eta = eta_min + (eta0 - eta_min) (1 + cos(pi (s - W) / (S - W))) / 2
    one_cycle     rises from eta0/div to eta0 over the first pct_start of S, then falls to
                  eta0/(div * final_div), both halves along a cosine (torch's OneCycleLR, two phases)
    plateau       eta = eta0 * factor^r, where r grows by one whenever the monitored value has
                  not improved by more than min_delta for ``patience`` epochs

Each schedule keeps its position in plain numbers (``state_dict``/``load_state_dict``),
so a checkpoint can resume it exactly.
"""

import math

from .errors import ConfigError, suggest


def _number(name, value, low=None, high=None, strict_low=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}.") from None
    too_low = low is not None and (value < low or (strict_low and value == low))
    too_high = high is not None and value > high
    if not math.isfinite(value) or too_low or too_high:
        need = f"{'>' if strict_low else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise ConfigError(f"{name} must be {need}, got {value}.")
    return value


class Schedule:
    """Base class. Subclasses implement ``rate(step)`` from ``self.base``, ``self.total_steps`` and
    ``self.steps_per_epoch``."""

    name = "schedule"

    def __init__(self):
        self.base = None
        self.total_steps = None
        self.steps_per_epoch = None

    def start(self, base_rate, total_steps, steps_per_epoch):
        """Called by the trainer before the first step (and again on resume, with the same numbers)."""
        self.base = float(base_rate)
        self.total_steps = max(int(total_steps), 1)
        self.steps_per_epoch = max(int(steps_per_epoch), 1)

    def rate(self, step):
        raise NotImplementedError

    def end_epoch(self, value=None):
        """Told the monitored value (validation loss, else training loss) after each epoch."""

    def hyperparameters(self):
        return {}

    def state_dict(self):
        return {"name": self.name, **self.hyperparameters()}

    def load_state_dict(self, d):
        if d.get("name") != self.name:
            raise ConfigError(f"cannot load '{d.get('name')}' schedule state into a '{self.name}' schedule.")

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """eta = eta0 at every step (the seeds' rule)."""

    name = "constant"

    def rate(self, step):
        return self.base


class StepDecay(Schedule):
    """eta = eta0 * gamma^floor(epoch / step_size): multiply by ``gamma`` every ``step_size`` epochs."""

    name = "step"

    def __init__(self, step_size=10, gamma=0.1):
        super().__init__()
        if isinstance(step_size, bool) or int(step_size) != step_size or step_size < 1:
            raise ConfigError(f"step_size must be a positive whole number of epochs, got {step_size!r}.")
        self.step_size = int(step_size)
        self.gamma = _number("gamma", gamma, 0.0, strict_low=True)

    def hyperparameters(self):
        return {"step_size": self.step_size, "gamma": self.gamma}

    def rate(self, step):
        epoch = step // self.steps_per_epoch
        return self.base * self.gamma ** (epoch // self.step_size)


class Exponential(Schedule):
    """eta = eta0 * gamma^epoch."""

    name = "exponential"

    def __init__(self, gamma=0.95):
        super().__init__()
        self.gamma = _number("gamma", gamma, 0.0, strict_low=True)

    def hyperparameters(self):
        return {"gamma": self.gamma}

    def rate(self, step):
        return self.base * self.gamma ** (step // self.steps_per_epoch)


class Cosine(Schedule):
    """Linear warm-up over ``warmup`` (a fraction of all steps if < 1, else a number of epochs), then cosine decay:

        s < W:   eta = eta0 (s + 1) / W
        s >= W:  eta = eta_min + (eta0 - eta_min) (1 + cos(pi (s - W) / (S - W))) / 2
    """

    name = "cosine"

    def __init__(self, warmup=0.0, min_rate=0.0):
        super().__init__()
        self.warmup = _number("warmup", warmup, 0.0)
        self.min_rate = _number("min_rate", min_rate, 0.0)

    def hyperparameters(self):
        return {"warmup": self.warmup, "min_rate": self.min_rate}

    def _warmup_steps(self):
        steps = self.warmup * self.total_steps if self.warmup < 1 else self.warmup * self.steps_per_epoch
        return min(int(round(steps)), self.total_steps - 1)

    def rate(self, step):
        warm = self._warmup_steps()
        if step < warm:
            return self.base * (step + 1) / warm
        progress = min((step - warm) / max(self.total_steps - warm, 1), 1.0)
        return self.min_rate + (self.base - self.min_rate) * 0.5 * (1.0 + math.cos(math.pi * progress))


class OneCycle(Schedule):
    """One cycle (Smith & Topin; torch.optim.lr_scheduler.OneCycleLR with two phases, cosine annealing).

    The base learning rate is the peak. With S total steps and P = pct_start * S - 1:

        s <= P:  eta = cos_anneal(eta0 / div, eta0, s / P)
        s > P:   eta = cos_anneal(eta0, eta0 / (div * final_div), (s - P) / (S - 1 - P))
        cos_anneal(a, b, x) = b + (a - b) (1 + cos(pi x)) / 2
    """

    name = "one_cycle"

    def __init__(self, pct_start=0.3, div=25.0, final_div=1e4):
        super().__init__()
        self.pct_start = _number("pct_start", pct_start, 0.0, 1.0, strict_low=True)
        self.div = _number("div", div, 0.0, strict_low=True)
        self.final_div = _number("final_div", final_div, 0.0, strict_low=True)

    def hyperparameters(self):
        return {"pct_start": self.pct_start, "div": self.div, "final_div": self.final_div}

    @staticmethod
    def _anneal(start, end, x):
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * x))

    def rate(self, step):
        initial = self.base / self.div
        final = initial / self.final_div
        peak_step = self.pct_start * self.total_steps - 1
        if step <= peak_step:
            return self._anneal(initial, self.base, step / peak_step if peak_step > 0 else 1.0)
        span = max(self.total_steps - 1 - peak_step, 1e-12)
        return self._anneal(self.base, final, min((step - peak_step) / span, 1.0))


class ReduceOnPlateau(Schedule):
    """eta = eta0 * factor^r; r += 1 when the monitored value has not improved for ``patience`` epochs.

    "Improved" means value < best - min_delta. After a reduction the count starts again;
    the rate never goes below ``min_rate``.
    """

    name = "plateau"

    def __init__(self, factor=0.5, patience=5, min_delta=0.0, min_rate=0.0):
        super().__init__()
        self.factor = _number("factor", factor, 0.0, 1.0, strict_low=True)
        if isinstance(patience, bool) or int(patience) != patience or patience < 0:
            raise ConfigError(f"patience must be a whole number of epochs >= 0, got {patience!r}.")
        self.patience = int(patience)
        self.min_delta = _number("min_delta", min_delta, 0.0)
        self.min_rate = _number("min_rate", min_rate, 0.0)
        self.best = math.inf
        self.bad_epochs = 0
        self.reductions = 0

    def hyperparameters(self):
        return {"factor": self.factor, "patience": self.patience, "min_delta": self.min_delta,
                "min_rate": self.min_rate}

    def rate(self, step):
        return max(self.base * self.factor ** self.reductions, self.min_rate)

    def end_epoch(self, value=None):
        if value is None or not math.isfinite(value):
            return
        if value < self.best - self.min_delta:
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.reductions += 1
                self.bad_epochs = 0

    def state_dict(self):
        return {**super().state_dict(), "best": self.best, "bad_epochs": self.bad_epochs,
                "reductions": self.reductions}

    def load_state_dict(self, d):
        super().load_state_dict(d)
        self.best = float(d["best"])
        self.bad_epochs = int(d["bad_epochs"])
        self.reductions = int(d["reductions"])


SCHEDULES = {cls.name: cls for cls in (Constant, StepDecay, Exponential, Cosine, OneCycle, ReduceOnPlateau)}
_ALIASES = {"onecycle": "one_cycle", "one-cycle": "one_cycle", "reduce_on_plateau": "plateau", "none": "constant",
            "cosine_warmup": "cosine"}


def get_schedule(schedule=None, **hyperparameters):
    """A Schedule from None (constant), a name, or an object. Names: constant, step, exponential, cosine,
    one_cycle, plateau. Extra keyword arguments are the schedule's hyperparameters."""
    if schedule is None:
        schedule = "constant"
    if isinstance(schedule, Schedule):
        return schedule
    if not isinstance(schedule, str):
        raise ConfigError(f"schedule must be a name or a Schedule, got {schedule!r}.")
    key = schedule.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SCHEDULES:
        raise ConfigError(f"unknown schedule '{schedule}'; choose one of {', '.join(SCHEDULES)}."
                          + suggest(key, SCHEDULES))
    try:
        return SCHEDULES[key](**hyperparameters)
    except TypeError as error:
        raise ConfigError(f"schedule '{key}': {error}.") from None
