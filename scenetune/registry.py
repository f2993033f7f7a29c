"""The tasks scenetune knows. Each task module defines one `trainables.task.Task` subclass, which
registers itself when the module is imported: a new task is one more name on the import line."""

from __future__ import annotations

from scenetune.errors import UserError
from trainables import bovw, cnn, feature_svm, mlp, patch_mlp  # noqa: F401  (importing a task module registers its task)
from trainables.task import Task, registered_tasks

TASKS: dict[str, Task] = registered_tasks()


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name]


def task_for_model(kind: str) -> Task:
    """The task whose trials save networks of this kind (a checkpoint's model.json names it)."""
    for task in TASKS.values():
        if task.model_kind == kind:
            return task
    raise ValueError(
        f"no task saves {kind!r} models; known: {', '.join(t.model_kind for t in TASKS.values() if t.model_kind)}"
    )


def feature_source_kinds() -> tuple[str, ...]:
    """The model kinds whose hidden layers can feed a feature task."""
    return tuple(task.model_kind for task in TASKS.values() if task.feature_source and task.model_kind)


def accepted_source_kinds(task: Task) -> tuple[str, ...]:
    """The model kinds a feature task's --from may hold ("network": any feature source)."""
    kinds: list[str] = []
    for kind in task.source_kinds:
        kinds += feature_source_kinds() if kind == "network" else [kind]
    return tuple(kinds)
