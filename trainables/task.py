"""The plug-in interface of a task, in the spirit of Optuna's BaseSampler: one small typed class per
task says everything the sweep runner, the checkpoints and the feature tasks need to know about it.

A task module defines a subclass; defining it registers it (`scenetune.registry` imports the task
modules). Importing a task module must not import torch: the sweep's driver imports every task to
list and check them, and torch would add seconds to every command. Task methods that run where the
trial runs (`train`, `build_model`) import what they need there.
"""

from __future__ import annotations

import json
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from scenetune.experiment import RUN_KEYS
from search_spaces.base import TaskSpace
from trainables.specs import hidden_layer_name
from trainables.staging import remove_orphaned_staging

if TYPE_CHECKING:
    from torch import nn

    from scenetune.cost import FirstResultWork
    from scenetune.data import TrialData

# Every task class defined so far, by task name (filled by Task.__init_subclass__).
_REGISTERED: dict[str, type[Task]] = {}


class Task(ABC):
    """One experiment of the study: its search space, its config check, what its trials receive,
    its trainable, and, for tasks whose trials save a network, how to rebuild that network."""

    space: ClassVar[TaskSpace]
    # The `model` a checkpoint's model.json names, for tasks whose trials save a network.
    model_kind: ClassVar[str | None] = None
    # Whether that network's hidden layers (second, third, ...) can feed `feature_svm --from`.
    feature_source: ClassVar[bool] = False
    # Feature tasks: the model kinds `--from` may hold, and whether --from is required.
    source_kinds: ClassVar[tuple[str, ...]] = ()
    source_required: ClassVar[bool] = False
    # Whether a trial's seed changes what it learns (a network's initialisation, a k-means codebook);
    # a refit of a task whose fit a seed does not change trains once, whatever --refit asks.
    seeded: ClassVar[bool] = True
    # Whether a search trial may be scored by cross-validation on train + validation rather than on the
    # validation split alone (trainables/svm.py): a fit that costs seconds, on features that learnt
    # nothing from the train images' labels (bovw on dense SIFT; not features of a trained network).
    cross_validates_selection: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None):
            _REGISTERED[cls.space.task] = cls

    @property
    def name(self) -> str:
        return self.space.task

    def trial_seed(self, config: dict[str, Any]) -> int:
        """One seed per (sweep seed, hyperparameters): the same configuration starts from the same
        weights and batch order in a re-run, whatever the run lets it do (its epochs, its time limit).
        The hyperparameters are the keys the task's defaults name: a search's derived choices
        (use_dropout=False beside dropout=0.0) describe no other network, so the defaults, as a search's
        first trial, train exactly as the defaults in a preset or a sweep of their own."""
        named = [key for key in self.space.defaults if key in config and key not in RUN_KEYS]
        hyperparameters = {key: config[key] for key in named}
        described = json.dumps(hyperparameters, sort_keys=True, default=str)
        return (int(config.get("seed", 0)) * 1_000_003 + zlib.crc32(described.encode())) % (2**31)

    @abstractmethod
    def check_config(self, config: dict[str, Any], n_classes: int, context: dict[str, Any]) -> None:
        """Raise ValueError for a configuration that cannot be trained, before any trial starts."""

    @abstractmethod
    def train(self, config: dict[str, Any], data: Any) -> None:
        """One trial: train and `tune.report` every epoch. Runs in the trial's worker."""

    def build_inputs(
        self,
        data: TrialData,
        source: Any,
        values: Callable[[str], list[Any]],
        data_key: str,
        cache_dir: str | None,
    ) -> Any:
        """What every trial receives through the object store (default: the dataset's arrays)."""
        return data

    def build_model(self, description: dict[str, Any]) -> nn.Module:
        """The untrained network a checkpoint's model.json describes, ready for its weights."""
        raise NotImplementedError(f"{self.name} trials save no network")

    def network_for(self, config: dict[str, Any], n_classes: int) -> nn.Module | None:
        """The untrained network a configuration trains, without its input statistics (what the cost
        estimate counts the work of); None for tasks that train no network."""
        return None

    def first_result_work(self, trial_data: TrialData, inputs: Any, n_classes: int) -> FirstResultWork | None:
        """How the sweep estimates what a trial must finish before its first result (scenetune.cost):
        for a task that trains a network, its first epoch; None: not estimated, nothing pruned."""
        from scenetune.cost import NetworkEpochWork, WorkEstimate

        if self.model_kind is None:
            return None
        return NetworkEpochWork(WorkEstimate(self.name, n_classes), trial_data.split_sizes()["train"])

    def hidden_layers(self, description: dict[str, Any]) -> list[str]:
        """The names of the hidden layers a feature task may take (second, third, ...)."""
        return [hidden_layer_name(i) for i in range(int(description["spec"]["depth"]))]

    def trainable(self) -> Callable[[dict[str, Any], Any], None]:
        """The trial function Ray Tune runs; it names the trials and their folders (train_<task>_...)."""
        task = self

        def run_trial(config: dict[str, Any], data: Any) -> None:
            remove_orphaned_staging()  # what trials killed while reporting left on this machine
            task.train(config, data)

        run_trial.__name__ = run_trial.__qualname__ = f"train_{self.name}"
        return run_trial


def registered_tasks() -> dict[str, Task]:
    """One instance of every task class defined, by name."""
    return {name: _REGISTERED[name]() for name in sorted(_REGISTERED)}
