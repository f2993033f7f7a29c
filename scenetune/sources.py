"""`--from`: the trained network whose features a feature task (feature_svm, bovw) builds on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenetune.errors import UserError
from scenetune.experiment import best_trial, is_experiment_dir, read_experiment_record
from trainables.checkpoints import is_checkpoint_dir, read_description


@dataclass
class SourceModel:
    checkpoint: Path
    description: dict[str, Any]
    record: dict[str, Any] | None  # the experiment's scenetune.json, when --from named an experiment

    @property
    def kind(self) -> str:
        return self.description["model"]

    @property
    def hidden_layers(self) -> list[str]:
        from scenetune.registry import task_for_model

        return task_for_model(self.kind).hidden_layers(self.description)


def resolve_checkpoint(path: Path) -> tuple[Path, dict[str, Any] | None]:
    """A checkpoint folder as it is, or an experiment's best trial's checkpoint and its record."""
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if is_checkpoint_dir(path):
        return path, None
    if is_experiment_dir(path):
        trial = best_trial(path)
        if trial is None:
            raise UserError(f"experiment {path} has no trial with a checkpoint yet")
        return trial.checkpoint, read_experiment_record(path)
    raise UserError(
        f"{path} is neither a checkpoint (model.pt and model.json) nor a scenetune experiment directory"
    )


def resolve_source(path_text: str, accepted_kinds: tuple[str, ...], task: str) -> SourceModel:
    path = Path(path_text).expanduser().resolve()
    checkpoint, record = resolve_checkpoint(path)
    description = read_description(checkpoint)
    if description.get("model") not in accepted_kinds:
        raise UserError(
            f"--from {path} holds {description.get('model')} models, but {task} needs a {' or '.join(accepted_kinds)} experiment or checkpoint"
        )
    return SourceModel(checkpoint, description, record)
