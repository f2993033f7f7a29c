"""The tasks scenetune knows: each is a search space plus a trainable. A new task adds one line."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from scenetune.errors import UserError
from search_spaces import mlp as mlp_space
from search_spaces.base import TaskSpace


@dataclass(frozen=True)
class Task:
    space: TaskSpace
    trainable_path: str  # "module:function"; imported lazily so the CLI starts without torch
    check_path: str

    @property
    def name(self) -> str:
        return self.space.task

    def _resolve(self, path: str) -> Callable[..., Any]:
        module, function = path.split(":")
        return getattr(importlib.import_module(module), function)

    def trainable(self) -> Callable[..., None]:
        return self._resolve(self.trainable_path)

    def check_config(self, config: dict[str, Any], n_classes: int) -> None:
        self._resolve(self.check_path)(config, n_classes)


TASKS: dict[str, Task] = {
    task.name: task
    for task in [
        Task(mlp_space.SPACE, "trainables.mlp:train_mlp", "trainables.mlp:check_config"),
    ]
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name]
