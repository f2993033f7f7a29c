"""One concise, updating progress line for a sweep, in place of Ray's tables."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from ray import tune

from scenetune.experiment import describe_config, is_accuracy_score

SHOWN_PARAMS = 4
SHOWN_RUNNING = 4
# While trials run, the line is redrawn this often even when no trial reports (a long first epoch
# must not look like a hang); a log, where each redraw is a new line, gets one line a minute.
REFRESH_S = {True: 5.0, False: 60.0}


class ProgressLine(tune.Callback):
    """Trials finished / running / stopped early / failed, and the best val_acc so far with its config.

    On a terminal the line is rewritten in place; in a log it is printed when a trial ends.
    Holds no stream (the callback is saved with the experiment and must pickle). For refits (`refit`)
    it shows each finished refit's test_acc instead: a refit trained on train + validation scores its
    own training images there, so its val_acc (1.0 for most networks) says nothing.
    """

    def __init__(
        self,
        total: int,
        epochs: int,
        defaults: dict[str, Any],
        budget_s: float | None = None,
        refit: bool = False,
    ):
        self.total = total
        self.refit = refit
        self.budget_s = budget_s
        self.epochs = epochs
        self.defaults = defaults
        self.started = time.monotonic()
        self.best_val_acc = -math.inf
        self.best_config: dict[str, Any] = {}
        self._last_width = 0
        self._last_shown = time.monotonic()
        self._ended: dict[str, str] = {}  # trial_id -> "done" | "error"; Ray updates status after the hooks

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("budget_s", None)  # saved by an older scenetune
        self.__dict__.setdefault("refit", False)
        self.started = time.monotonic()  # a resumed sweep counts its own time
        self._last_shown = self.started

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        best = result.get("best_val_acc", result.get("val_acc"))
        if is_accuracy_score(best) and best > self.best_val_acc:
            self.best_val_acc = best
            self.best_config = trial.config
        if sys.stdout.isatty():
            self._show(trials, final=False)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        terminal = sys.stdout.isatty()
        if time.monotonic() - self._last_shown >= REFRESH_S[terminal]:
            self._show(trials, final=not terminal)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended[trial.trial_id] = "done"
        self._show(trials, final=not sys.stdout.isatty())

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended[trial.trial_id] = "error"
        self._show(trials, final=not sys.stdout.isatty())

    def _state(self, trial: Any) -> str:
        if trial.trial_id in self._ended:
            return self._ended[trial.trial_id]
        return {"TERMINATED": "done", "ERROR": "error", "RUNNING": "running"}.get(trial.status, "pending")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if sys.stdout.isatty():
            sys.stdout.write("\n")
            sys.stdout.flush()

    def _stopped_early(self, trial: Any) -> bool:
        """Stopped by ASHA: its last result carries the stop (done); one the budget ended does not."""
        last = trial.last_result or {}
        ended = last.get("diverged", False) or last.get("too_slow", False)
        return not ended and bool(last.get("done")) and last.get("epoch", self.epochs) < self.epochs

    def render(self, trials: list) -> str:
        states = {t.trial_id: self._state(t) for t in trials}
        finished = [t for t in trials if states[t.trial_id] == "done"]
        running = sum(state == "running" for state in states.values())
        errors = sum(state == "error" for state in states.values())
        stopped = sum(self._stopped_early(t) for t in finished)
        diverged = sum(bool((t.last_result or {}).get("diverged")) for t in finished)
        elapsed = int(time.monotonic() - self.started)
        parts = [
            f"[{elapsed // 60:02d}:{elapsed % 60:02d}]",
            f"trials {len(finished) + errors}/{self.total} done"
            if self.budget_s is None
            else f"trials {len(finished) + errors} done (budget {self.budget_s:.0f} s)",
            self._running(trials, states, running),
            f"{stopped} stopped early",
        ]
        too_slow = sum(bool((t.last_result or {}).get("too_slow")) for t in finished)
        if too_slow:
            parts.append(f"{too_slow} too slow")
        if diverged:
            parts.append(f"{diverged} diverged")
        if errors:
            parts.append(f"{errors} failed")
        if self.refit:
            scores = [t.last_result.get("test_acc") for t in finished if t.last_result]
            shown = [f"{score:.4f}" for score in scores if isinstance(score, (int, float))]
            if shown:
                parts.append(f"test_acc {', '.join(shown)}")
        elif self.best_val_acc > -math.inf:
            config = describe_config(self.best_config, self.defaults, SHOWN_PARAMS)
            parts.append(f"best val_acc {self.best_val_acc:.4f} ({config})")
        return " | ".join(parts)

    def _running(self, trials: list, states: dict[str, str], count: int) -> str:
        """How many trials run, and the epoch each is in (the one after its last report)."""
        busy = [t for t in trials if states[t.trial_id] == "running"][:SHOWN_RUNNING]
        if not busy:
            return f"{count} running"
        epochs = [
            f"{t.trial_id} epoch {int((t.last_result or {}).get('epoch', 0)) + 1}/{self.epochs}" for t in busy
        ]
        more = ", ..." if count > len(busy) else ""
        return f"{count} running ({', '.join(epochs)}{more})"

    def _show(self, trials: list, final: bool) -> None:
        self._last_shown = time.monotonic()
        line = self.render(trials)
        if final:
            sys.stdout.write(line + "\n")
        else:
            padding = max(0, self._last_width - len(line))
            sys.stdout.write("\r" + line + " " * padding)
            self._last_width = len(line)
        sys.stdout.flush()
