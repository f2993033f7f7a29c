"""A trial's checkpoint: the best-validation weights, how to rebuild the model, and training state."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from scenetune.experiment import TRAINING_STATE_FILE

WEIGHTS_FILE = "model.pt"
MODEL_FILE = "model.json"


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    description: dict[str, Any],
    training_state: dict[str, Any] | None = None,
) -> None:
    """Write weights (model.pt), what rebuilds the model (model.json) and optionally optimizer state."""
    directory.mkdir(parents=True, exist_ok=True)
    write_torch_file(model.state_dict(), directory / WEIGHTS_FILE)
    (directory / MODEL_FILE).write_text(json.dumps(description, indent=2, sort_keys=True))
    if training_state is not None:
        write_torch_file(training_state, directory / TRAINING_STATE_FILE)


def write_torch_file(content: Any, path: Path) -> None:
    """torch.save through an open file, so that a full disk fails as one (given a path, torch reports
    it as "[enforce fail at inline_container.cc] unexpected pos"), and says which disk and how much."""
    try:
        with open(path, "wb") as file:
            torch.save(content, file)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        free_mib = shutil.disk_usage(path.parent).free / 2**20
        raise OSError(
            errno.ENOSPC,
            f"no space left on the disk of {path.parent} to write {path.name} "
            f"({tensor_bytes(content) / 2**20:.0f} MiB of tensors, {free_mib:.0f} MiB free)",
        ) from error


def tensor_bytes(content: Any) -> int:
    """The bytes of the tensors in a (nested) state dict."""
    if isinstance(content, torch.Tensor):
        return content.numel() * content.element_size()
    if isinstance(content, dict):
        return sum(tensor_bytes(value) for value in content.values())
    if isinstance(content, (list, tuple)):
        return sum(tensor_bytes(value) for value in content)
    return 0


def is_checkpoint_dir(directory: Path) -> bool:
    return (directory / WEIGHTS_FILE).is_file() and (directory / MODEL_FILE).is_file()


def read_description(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / MODEL_FILE).read_text())


def load_model(directory: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a checkpoint directory, in evaluation mode, on `device`."""
    directory = Path(directory)
    description = read_description(directory)
    from scenetune.registry import task_for_model  # the task that saved it knows how to rebuild it

    model = task_for_model(description["model"]).build_model(description)
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.to(device).eval(), description


def load_training_state(directory: Path) -> dict[str, Any] | None:
    path = Path(directory) / TRAINING_STATE_FILE
    return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None
