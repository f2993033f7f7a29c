from __future__ import annotations

import numpy as np
import pytest
import torch

from search_spaces import patch_mlp as space
from trainables.models import (
    MLPSpec,
    PatchMLP,
    PatchSpec,
    aggregate_patch_scores,
    layer_output,
    patch_sample_loss,
    patches_as_samples,
    split_into_patches,
)
from trainables.patch_mlp import patch_training_plan
from trainables.training import DeviceSplit


def _spec(image_size: int = 16, patch_size: int = 8, aggregation: str = "mean") -> PatchSpec:
    return PatchSpec(
        image_size, patch_size, aggregation, MLPSpec(input_size=patch_size, n_classes=3, depth=2, width=32)
    )


def test_patches_are_non_overlapping_tiles_in_row_major_order() -> None:
    images = torch.arange(2 * 4 * 4 * 3).reshape(2, 4, 4, 3)
    patches = split_into_patches(images, 2)
    assert patches.shape == (2, 4, 2, 2, 3)
    assert torch.equal(patches[1, 0], images[1, :2, :2]) and torch.equal(patches[1, 1], images[1, :2, 2:])
    assert torch.equal(patches[0, 2], images[0, 2:, :2]) and torch.equal(patches[0, 3], images[0, 2:, 2:])


def test_each_aggregation_equals_its_definition() -> None:
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]]])  # one image, two patches, three classes
    softmax = torch.softmax(logits, dim=-1)[0]
    expected = {
        "mean": softmax.mean(dim=0),
        "max": softmax.max(dim=0).values / softmax.max(dim=0).values.sum(),
        "min": softmax.min(dim=0).values / softmax.min(dim=0).values.sum(),
        "mean_logits": torch.softmax(logits[0].mean(dim=0), dim=-1),
        "vote": torch.tensor([0.5, 0.5, 0.0]),
    }
    for aggregation, value in expected.items():
        assert torch.allclose(aggregate_patch_scores(logits, aggregation)[0], value), aggregation


def test_identical_patches_give_the_same_result_for_mean_max_min() -> None:
    torch.manual_seed(0)
    tile = torch.randint(0, 256, (1, 8, 8, 3), dtype=torch.uint8)
    image = tile.repeat(1, 2, 2, 1)  # four identical 8x8 patches of a 16x16 image
    mean = PatchMLP(_spec(aggregation="mean")).eval()
    results = []
    for aggregation in ("mean", "max", "min"):
        model = PatchMLP(_spec(aggregation=aggregation)).eval()
        model.load_state_dict(mean.state_dict())
        results.append(model(image))
    assert torch.allclose(results[0], results[1]) and torch.allclose(results[0], results[2])


def test_layer_output_is_per_patch() -> None:
    model = PatchMLP(_spec(image_size=32, patch_size=8))
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    assert tuple(layer_output(model, images, "third").shape) == (5, 16, 16)
    assert tuple(layer_output(model, images, "first").shape) == (5, 16, 8 * 8 * 3)


def test_training_on_patches_makes_every_patch_a_sample_with_its_images_label() -> None:
    model = PatchMLP(_spec(image_size=32, patch_size=8))
    plan = patch_training_plan(model, {})
    images = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8))
    labels = torch.tensor([0, 1, 2, 0, 1])
    samples = plan.training_samples(DeviceSplit(images, labels))
    # 16 patches per image, in the image's order, each labelled with its image's class: the loop then
    # shuffles them across images like any other samples.
    assert samples.x.shape == (5 * 16, 8, 8, 3) and torch.equal(samples.y, labels.repeat_interleave(16))
    assert torch.equal(samples.x[3 * 16 + 5], split_into_patches(images, 8)[3, 5])
    assert torch.equal(patches_as_samples(images, labels, 8)[0], samples.x)
    loss, predictions = plan.loss_fn(model, samples.x[:7], samples.y[:7])
    logits = model.mlp(samples.x[:7])
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, samples.y[:7]))
    assert torch.equal(predictions, logits.argmax(dim=1)) and plan.loss_fn is patch_sample_loss


def test_patch_size_must_divide_the_image() -> None:
    with pytest.raises(ValueError, match="patch_size 12 does not divide image_size 32"):
        _spec(image_size=32, patch_size=12)


def test_patch_mlp_presets_and_space() -> None:
    import optuna

    from search_spaces.base import OPTUNA_SPACE

    define = space.SPACE.define_by_run({}, {"seed": 0, "epochs": 1})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(50):  # the space's suggestions always tile the image, and vote only trains on patches
        trial = study.ask()
        config = {**define(trial), **trial.params}
        study.tell(trial, 0.0)
        assert config["image_size"] % config["patch_size"] == 0
        assert config["aggregation"] != "vote" or config["train_on"] == "patch"
    assert space.SPACE.possible_values("image_size", OPTUNA_SPACE, {}) == space.IMAGE_SIZES
    assert [c["patch_size"] for c in space.SPACE.preset_configs("patch_size", {})] == [8, 16, 32, 64]
    assert [c["patch_size"] for c in space.SPACE.preset_configs("patch_size", {"image_size": 32})] == [
        8,
        16,
        32,
    ]
    assert [c["aggregation"] for c in space.SPACE.preset_configs("aggregation", {})] == ["mean", "max", "min"]
    config = space.SPACE.preset_configs("aggregation", {})[0]
    assert (config["depth"], config["width"], config["patch_size"]) == (4, 2048, 32)
