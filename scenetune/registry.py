"""The tasks scenetune knows: each is a search space plus a trainable. A new task adds one line."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from scenetune.errors import UserError
from search_spaces import bovw as bovw_space
from search_spaces import feature_svm as feature_svm_space
from search_spaces import mlp as mlp_space
from search_spaces import patch_mlp as patch_mlp_space
from search_spaces.base import TaskSpace


def _resolve(path: str) -> Callable[..., Any]:
    module, function = path.split(":")
    return getattr(importlib.import_module(module), function)


@dataclass(frozen=True)
class Task:
    space: TaskSpace
    trainable_path: str  # "module:function"; imported lazily so the CLI starts without torch
    check_path: str  # (config, n_classes, context) -> None, raising ValueError
    # Feature tasks: the model kind `--from` must hold, and what turns the data into trial inputs.
    source_kind: str | None = None
    source_required: bool = False
    inputs_path: str | None = None  # (trial_data, source, values, data_key) -> what the trials receive

    @property
    def name(self) -> str:
        return self.space.task

    def trainable(self) -> Callable[..., None]:
        """The trial function, importing its module (torch) only where the trial runs, not in the driver."""
        path = self.trainable_path

        def run_trial(config: dict[str, Any], data: Any) -> None:
            _resolve(path)(config, data)

        # Ray Tune names trials and their folders after the function: train_mlp_00001_...
        run_trial.__name__ = run_trial.__qualname__ = path.split(":")[1]
        return run_trial

    def check_config(self, config: dict[str, Any], n_classes: int, context: dict[str, Any]) -> None:
        _resolve(self.check_path)(config, n_classes, context)

    def build_inputs(self, *arguments: Any) -> Any:
        return _resolve(self.inputs_path)(*arguments) if self.inputs_path else arguments[0]


TASKS: dict[str, Task] = {
    task.name: task
    for task in [
        Task(mlp_space.SPACE, "trainables.mlp:train_mlp", "trainables.specs:check_mlp_config"),
        Task(patch_mlp_space.SPACE, "trainables.patch_mlp:train_patch_mlp", "trainables.specs:check_patch_mlp_config"),
        Task(
            feature_svm_space.SPACE,
            "trainables.feature_svm:train_feature_svm",
            "trainables.feature_svm:check_config",
            source_kind="mlp",
            source_required=True,
            inputs_path="trainables.feature_svm:build_inputs",
        ),
        Task(
            bovw_space.SPACE,
            "trainables.bovw:train_bovw",
            "trainables.bovw:check_config",
            source_kind="patch_mlp",
            inputs_path="trainables.bovw:build_inputs",
        ),
    ]
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name]
