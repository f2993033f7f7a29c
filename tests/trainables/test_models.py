from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.checkpoints import load_model, save_checkpoint, write_torch_file
from trainables.models import INITIALIZERS, MLP, MLPSpec, count_parameters, layer_output


def test_study_initial_model_has_the_studys_parameter_count() -> None:
    model = MLP(MLPSpec(input_size=32, n_classes=8, depth=1, width=2048))
    assert count_parameters(model) == 6_309_896
    assert model.layer_names == ["first", "second", "output"]


def test_halving_and_constant_widths_with_study_layer_names() -> None:
    model = MLP(MLPSpec(input_size=32, n_classes=8, depth=4, width=2048, batch_norm=True, dropout=0.5))
    assert model.layer_names == ["first", "second", "third", "fourth", "fifth", "output"]
    assert [model.layers[n][0].out_features for n in ("second", "third", "fourth", "fifth")] == [
        2048,
        1024,
        512,
        256,
    ]
    constant = MLPSpec(input_size=8, n_classes=3, depth=3, width=64, width_schedule="constant")
    assert constant.hidden_widths() == [64, 64, 64]


def test_layer_output_shapes_for_every_layer() -> None:
    model = MLP(MLPSpec(input_size=16, n_classes=5, depth=3, width=128))
    images = np.random.default_rng(0).integers(0, 256, size=(7, 16, 16, 3), dtype=np.uint8)
    shapes = {
        name: tuple(layer_output(model, images, name, batch_size=3).shape) for name in model.layer_names
    }
    assert shapes == {
        "first": (7, 768),
        "second": (7, 128),
        "third": (7, 64),
        "fourth": (7, 32),
        "output": (7, 5),
    }
    logits = model.eval()(torch.as_tensor(images))
    assert torch.allclose(layer_output(model, images, "output"), logits)


def test_unknown_layer_lists_the_valid_names() -> None:
    model = MLP(MLPSpec(input_size=8, n_classes=2, depth=2, width=16))
    with pytest.raises(ValueError, match="unknown layer 'sixth'; valid layers: first, second, third, output"):
        layer_output(model, np.zeros((1, 8, 8, 3), dtype=np.uint8), "sixth")


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_every_initializer_gives_its_spread(name: str) -> None:
    torch.manual_seed(0)
    model = MLP(MLPSpec(input_size=32, n_classes=8, depth=1, width=1024, initializer=name))
    weight = model.layers["second"][0].weight.detach()
    fan_in, fan_out = 3072, 1024
    expected_std = {
        "glorot_normal": math.sqrt(2 / (fan_in + fan_out)),
        "glorot_uniform": math.sqrt(2 / (fan_in + fan_out)),
        "he_normal": math.sqrt(2 / fan_in),
        "truncated_normal": 0.05 * 0.87962566103423978,
        "random_normal": 0.05,
        "random_uniform": 0.05 / math.sqrt(3),
    }[name]
    assert float(weight.std()) == pytest.approx(expected_std, rel=0.03)
    assert float(model.layers["second"][0].bias.detach().abs().max()) == 0.0
    if name in ("glorot_normal", "he_normal", "truncated_normal"):
        assert float(weight.abs().max()) <= 2 * expected_std / 0.87962566103423978 * 1.0001


def test_checkpoint_round_trip_reproduces_outputs(tmp_path: Path) -> None:
    mean, std = np.array([10.0, 20.0, 30.0]), np.array([2.0, 3.0, 4.0])
    model = MLP(MLPSpec(input_size=8, n_classes=4, depth=2, width=32, batch_norm=True), mean, std).eval()
    description = {"model": "mlp", "spec": model.spec.to_dict(), "classes": list("abcd"), "image_size": 8}
    save_checkpoint(tmp_path / "ckpt", model, description)
    loaded, loaded_description = load_model(tmp_path / "ckpt")
    images = np.random.default_rng(1).integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    assert loaded_description == description
    assert torch.equal(layer_output(model, images, "third"), layer_output(loaded, images, "third"))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device that is always full")
def test_a_full_disk_is_named_as_such_with_the_space_needed() -> None:
    # Given a path, torch.save reports a full disk as "[enforce fail at inline_container.cc] unexpected pos".
    weights = {"layer.weight": torch.zeros(2**20), "layer.bias": torch.zeros(2**18)}
    with pytest.raises(OSError, match=r"no space left on the disk of /dev to write full \(5 MiB of tensors"):
        write_torch_file(weights, Path("/dev/full"))


def test_invalid_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match="initializer must be one of"):
        MLPSpec(input_size=8, n_classes=2, initializer="zeros")
    with pytest.raises(ValueError, match="dropout must lie in"):
        MLPSpec(input_size=8, n_classes=2, dropout=1.5)


def test_torch_free_specs_name_every_activation_and_initializer_the_models_build():
    from trainables.models import ACTIVATIONS
    from trainables.specs import ACTIVATION_NAMES, INITIALIZER_NAMES

    assert set(ACTIVATION_NAMES) == set(ACTIVATIONS)
    assert set(INITIALIZER_NAMES) == set(INITIALIZERS)
