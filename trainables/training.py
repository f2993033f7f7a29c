"""The training loop every neural trainable shares: epochs over in-memory tensors, per-epoch
`tune.report` of the core metrics, the best-validation weights as the trial's checkpoint."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune
from torch import nn
from torch.nn import functional as F

from scenetune.data import Split
from scenetune.environment import torch_cpu_capability
from scenetune.experiment import RUN_TO_LIMIT, trains_on_validation
from trainables.checkpoints import load_model, load_training_state, save_checkpoint
from trainables.models import count_parameters
from trainables.predictions import save_test_predictions
from trainables.specs import LR_SCHEDULES, OPTIMIZERS, UNSET_LR_SCHEDULE
from trainables.staging import checkpoint_staging

EVAL_BATCH_SIZE = 2048
SGD_MOMENTUM = 0.9
FUSED_DEVICES = ("cpu", "cuda")
# A trial whose epochs so far project its end past this many times its limit stops at once; one
# projected a little past it runs on to the limit, which cuts it with most of its epochs scored.
PROJECTED_PAST_LIMIT = 1.5


def seed_torch_for_trial(seed: int) -> None:
    """Seed torch's generator before the trial builds its network: the initial weights are drawn from
    it, and a worker Ray reuses for a later trial carries whatever state the earlier ones left."""
    torch.manual_seed(seed)


def trial_device() -> torch.device:
    """The GPU Ray assigned to this trial, or the CPU."""
    if torch.cuda.is_available() and ray.get_gpu_ids():
        return torch.device("cuda")  # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU(s)
    return torch.device("cpu")


def match_threads_to_cpu_share() -> int:
    """Use as many intra-op threads as CPUs reserved for this trial, so trials do not oversubscribe."""
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    except Exception:  # outside Ray (tests calling the loop directly)
        cpus = os.cpu_count() or 1
    threads = max(1, int(cpus))
    torch.set_num_threads(threads)
    return threads


def make_optimizer(config: dict[str, Any], parameters) -> torch.optim.Optimizer:
    name = config.get("optimizer", "adam")
    lr = float(config.get("lr", 1e-3))
    weight_decay = float(config.get("weight_decay", 0.0))
    parameters = list(parameters)
    # The fused kernels update every parameter in one pass: about twice the training throughput of
    # the default optimizers for small batches on a CPU (benchmarks/run_benchmarks.py, measurement 2).
    fused = {"fused": True} if all(p.device.type in FUSED_DEVICES for p in parameters) else {}
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, **fused)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, **fused)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay, **fused)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def scheduled_lr(config: dict[str, Any], epoch: int) -> float:
    """The learning rate of `epoch` (1-based) of config['epochs'].

    `cosine` anneals from lr in the first epoch towards 0 in the last, so that a model's final
    weights come from small steps: at a constant rate its test accuracy swings by several points from
    one epoch to the next (a patch MLP's refits on MIT_split ended at 0.690 to 0.776 with one
    configuration), and the number a refit quotes is whichever epoch it stopped on. Trials without
    the key (experiments made before it) train at a constant rate, as they did."""
    lr = float(config.get("lr", 1e-3))
    schedule = config.get("lr_schedule", UNSET_LR_SCHEDULE)
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        epochs = max(1, int(config.get("epochs", 1)))
        return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))
    raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass
class DeviceSplit:
    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def from_split(cls, split: Split, device: torch.device) -> DeviceSplit:
        # torch.from_numpy shares memory with the (read-only, object-store) array: no copy on the CPU.
        return cls(
            torch.from_numpy(np.asarray(split.x)).to(device), torch.from_numpy(np.asarray(split.y)).to(device)
        )


def train_one_epoch(
    model: nn.Module,
    data: DeviceSplit,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    deadline: float | None = None,
) -> tuple[float, float] | None:
    """One pass in a seeded random order; returns the running mean loss and accuracy, or None when
    the trial's time (`deadline`, a time.perf_counter() value) runs out before the pass ends."""
    model.train()
    n = len(data.y)
    order = torch.randperm(n, generator=generator).to(data.x.device)
    # Sums stay on the device: no synchronisation per batch.
    loss_sum = torch.zeros((), device=data.x.device)
    correct = torch.zeros((), device=data.x.device, dtype=torch.long)
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]
        if len(batch) < 2 and start > 0 and _has_batch_norm(model):
            continue  # BatchNorm cannot train on a single sample; drop a last batch of one
        loss, predictions = loss_fn(model, data.x[batch], data.y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(batch)
        correct += (predictions == data.y[batch]).sum()
        if deadline is not None and time.perf_counter() > deadline:
            return None
    return float(loss_sum) / n, int(correct) / n


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def classification_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(x)
    return F.cross_entropy(logits, y), logits.argmax(dim=1)


@torch.inference_mode()
def evaluate_predicting(
    model: nn.Module,
    data: DeviceSplit,
    predict_log_proba: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float, np.ndarray]:
    """Mean negative log-likelihood, accuracy and the predicted class of each sample, in large batches."""
    model.eval()
    predict = predict_log_proba or (lambda m, x: F.log_softmax(m(x), dim=1))
    loss_sum, predicted = 0.0, []
    for start in range(0, len(data.y), EVAL_BATCH_SIZE):
        log_proba = predict(model, data.x[start : start + EVAL_BATCH_SIZE])
        target = data.y[start : start + EVAL_BATCH_SIZE]
        loss_sum += float(F.nll_loss(log_proba, target, reduction="sum"))
        predicted.append(log_proba.argmax(dim=1))
    classes = torch.cat(predicted)
    return loss_sum / len(data.y), float((classes == data.y).float().mean()), classes.cpu().numpy()


def evaluate(
    model: nn.Module,
    data: DeviceSplit,
    predict_log_proba: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Mean negative log-likelihood and accuracy, in large batches."""
    loss, accuracy, _ = evaluate_predicting(model, data, predict_log_proba)
    return loss, accuracy


@dataclass
class TrainingPlan:
    """How a trainable wants its model trained; the loop is the same for every task."""

    model: nn.Module
    description: dict[str, Any]  # what rebuilds the model from its checkpoint
    loss_fn: Callable = classification_loss
    predict_log_proba: Callable | None = None
    # Where the model trains on parts of the images (a patch MLP on its patches): the training split
    # as those samples. Batches draw them across all images, batch_size images' worth at a time.
    training_samples: Callable[[DeviceSplit], DeviceSplit] | None = None


@dataclass
class Progress:
    """Where a trial stands: its best validation epoch so far, the next epoch, which attempt this is,
    and the reports of the epochs since its last checkpoint."""

    best: dict[str, float]
    first_epoch: int = 1
    attempt: int = 1
    unsaved_reports: list[dict[str, Any]] = field(default_factory=list)

    def state(
        self, optimizer: torch.optim.Optimizer, generator: torch.Generator, epoch: int
    ) -> dict[str, Any]:
        """What a checkpoint keeps so that a retry continues after `epoch`, with the reports of the
        epochs it holds since the previous checkpoint."""
        return {
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "best": self.best,
            "epoch": epoch,
            "attempt": self.attempt,
            "reports": self.unsaved_reports,
        }


def _restore(
    model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator, device: torch.device
) -> Progress:
    """Continue from the trial's checkpoint if Ray hands it one (a retry or a resume), reporting again
    the epochs it holds (`_replay`), else start.

    A checkpoint without training state is not continued: its trial ended and freed it (see
    scenetune.trial_storage), so only training from the first epoch gives the planned run."""
    progress = Progress(
        best={"val_acc": -1.0, "epoch": 0, "test_acc": float("nan"), "val_loss": float("inf")}
    )
    restored = tune.get_checkpoint()
    if restored is None:
        return progress
    with restored.as_directory() as directory:
        state = load_training_state(Path(directory))
        if state is None:
            return progress
        weights, _ = load_model(Path(directory), device)
        if state.get("reports"):
            _replay(state["reports"], Path(directory))
    model.load_state_dict(weights.state_dict())
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return Progress(best=state["best"], first_epoch=state["epoch"] + 1, attempt=state.get("attempt", 1) + 1)


def _replay(reports: list[dict[str, Any]], checkpoint: Path) -> None:
    """Report a restored checkpoint's epochs again, the last with a copy of the checkpoint itself.

    A driver killed after the checkpoint was saved may never have recorded those reports; reported
    again, they supersede any recorded copy (`continued_lineage`), so the trial's history reaches the
    epoch its weights are at, and its last report names a checkpoint that holds them."""
    *earlier, last = reports
    for report in earlier:
        tune.report(report)
    with checkpoint_staging() as staging:
        shutil.copytree(checkpoint, staging, dirs_exist_ok=True)
        tune.report(last, checkpoint=tune.Checkpoint.from_directory(staging))


def _report(
    metrics: dict[str, Any],
    plan: TrainingPlan,
    model: nn.Module,
    saved_state: dict[str, Any] | None,
    test_predictions: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """One epoch's metrics to Ray Tune, with a checkpoint when the epoch improved on the best: the
    weights, the training state, and each test image's predicted and true class."""
    with checkpoint_staging() as staging:
        checkpoint = None
        if (
            saved_state is not None
        ):  # one checkpoint per improvement; Ray keeps only the latest, i.e. the best
            save_checkpoint(staging, model, plan.description, saved_state)
            if test_predictions is not None:
                save_test_predictions(staging, *test_predictions)
            checkpoint = tune.Checkpoint.from_directory(staging)
        tune.report(metrics, checkpoint=checkpoint)  # persists the checkpoint before returning


def best_val_acc(progress: Progress) -> float:
    """The best validation accuracy so far; NaN until an epoch has scored (a diverged one has not)."""
    return progress.best["val_acc"] if progress.best["epoch"] else float("nan")


def out_of_time(
    elapsed: float,
    limit: float,
    train_seconds: float,
    epoch_seconds: float,
    epochs_left: int,
    run_to_limit: bool,
) -> bool:
    """Whether a trial stops after this epoch for its time limit: its next epoch would end past the
    limit, or the epochs it has left would end past PROJECTED_PAST_LIMIT times it. Such a trial would
    spend its slot until the limit cuts it, on epochs whose scores TPE then takes for the region's
    (in the one-hour study, four of them took 38% of the patch step's slot time). A known
    configuration (`run_to_limit`, a prior) runs to its limit: the search's result must clear it."""
    if epochs_left <= 0:
        return False
    if elapsed + train_seconds > limit:
        return True
    return not run_to_limit and elapsed + epochs_left * epoch_seconds > PROJECTED_PAST_LIMIT * limit


def _too_slow_report(
    epoch: int, limit: float, progress: Progress, context: dict[str, Any], started: float
) -> dict[str, Any]:
    """The report of a trial stopped inside an epoch: that epoch has no metrics. The searcher sees the
    worst score for it, so that TPE learns to avoid such configurations; tables show `too_slow`."""
    return {
        "epoch": epoch,
        "too_slow": True,
        "epoch_unfinished": True,
        "val_acc": 0.0,
        **context,
        "error_message": f"epoch {epoch} could not finish within --max-trial-seconds {float(limit):g}",
        "best_val_acc": best_val_acc(progress),
        "best_epoch": progress.best["epoch"],
        "test_acc": progress.best["test_acc"],
        "trial_seconds": time.perf_counter() - started,
    }


def fit_and_report(plan: TrainingPlan, splits: dict[str, Split], config: dict[str, Any], seed: int) -> None:
    """Train for config['epochs'], reporting the core metrics after every epoch; `seed` (the task's
    `trial_seed`) sets the initialisation and the batch order.

    The checkpoint holds the weights of the best validation epoch; `test_acc` is measured on those
    weights whenever they change, so every report (also the last one of a trial ASHA stops) carries
    the test accuracy of the trial's best model.
    """
    started = time.perf_counter()
    threads = match_threads_to_cpu_share()
    device = trial_device()
    torch.manual_seed(seed)
    model = plan.model.to(device)
    optimizer = make_optimizer(config, model.parameters())
    generator = torch.Generator().manual_seed(seed)
    if trains_on_validation(config):
        splits = {
            **splits,
            "train": Split(
                np.concatenate([splits["train"].x, splits["val"].x]),
                np.concatenate([splits["train"].y, splits["val"].y]),
            ),
        }
    data = {name: DeviceSplit.from_split(split, device) for name, split in splits.items()}
    train_samples = plan.training_samples(data["train"]) if plan.training_samples else data["train"]
    samples_per_image = len(train_samples.y) // len(data["train"].y)
    progress = _restore(model, optimizer, generator, device)
    context = {
        "n_params": count_parameters(model),
        "node_id": ray.get_runtime_context().get_node_id(),
        "device": str(device),
        "threads": threads,
        # which instruction set rounded this trial's sums: nodes of a cluster may differ
        "cpu_capability": torch_cpu_capability(),
        "pid": os.getpid(),
        "attempt": progress.attempt,
    }
    epochs = int(config.get("epochs", 10))
    limit = config.get("max_trial_seconds")
    deadline = started + float(limit) if limit else None
    for epoch in range(progress.first_epoch, epochs + 1):
        epoch_started = time.perf_counter()
        set_lr(optimizer, scheduled_lr(config, epoch))
        trained = train_one_epoch(
            model,
            train_samples,
            optimizer,
            int(config.get("batch_size", 16)) * samples_per_image,
            generator,
            plan.loss_fn,
            deadline,
        )
        if trained is None:  # the epoch cannot end within the trial's time: stopped, not an error
            tune.report(_too_slow_report(epoch, limit, progress, context, started))
            return
        train_loss, train_acc = trained
        train_seconds = time.perf_counter() - epoch_started
        diverged = not math.isfinite(train_loss)
        val_loss, val_acc = evaluate(model, data["val"], plan.predict_log_proba)
        # A refit keeps its final weights (it trains for the epochs the search found best); a search
        # trial keeps its best validation epoch's.
        improved = not diverged and (bool(config.get("refit")) or val_acc > progress.best["val_acc"])
        if improved:
            _, test_acc, test_predicted = evaluate_predicting(model, data["test"], plan.predict_log_proba)
            progress.best = {"val_acc": val_acc, "epoch": epoch, "test_acc": test_acc, "val_loss": val_loss}
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "diverged": diverged,
            "train_samples_per_s": len(data["train"].y) / train_seconds,
            **context,
            "best_val_acc": best_val_acc(progress),
            "best_epoch": progress.best["epoch"],
            "test_acc": progress.best["test_acc"],
            "trial_seconds": time.perf_counter() - started,
        }
        now = time.perf_counter()
        too_slow = deadline is not None and out_of_time(
            now - started,
            float(limit),
            train_seconds,
            now - epoch_started,
            epochs - epoch,
            run_to_limit=bool(config.get(RUN_TO_LIMIT)),
        )
        metrics["too_slow"] = too_slow
        progress.unsaved_reports.append(dict(metrics))
        saved = progress.state(optimizer, generator, epoch) if improved else None
        test_predictions = (test_predicted, splits["test"].y) if improved else None
        _report(metrics, plan, model, saved, test_predictions)
        if improved:
            progress.unsaved_reports = []
        if diverged or too_slow:
            return  # a NaN or infinite loss, or no time for another epoch, ends the trial; the sweep goes on
