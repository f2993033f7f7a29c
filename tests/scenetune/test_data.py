from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import scenetune.data as data
from scenetune.data import decode_image, load_dataset, make_trial_data
from scenetune.errors import UserError
from tests.conftest import make_image_folder, write_image


def _odd_images_folder(root: Path) -> Path:
    """Every kind of image a real folder holds, plus files that must be ignored."""
    make_image_folder(root, {"café olé": (200, 30, 30), "ñandú azul": (30, 30, 200)})
    odd = root / "train" / "café olé"
    write_image(odd / "gray.png", (90, 90, 90), mode="L")
    write_image(odd / "palette.gif", (200, 30, 30), mode="P")
    rgba = Image.new("RGBA", (12, 12), (0, 0, 0, 0))  # fully transparent: must come out white
    rgba.save(odd / "transparent.png")
    Image.new("CMYK", (12, 12), (0, 255, 255, 0)).save(odd / "cmyk.jpg")
    Image.fromarray(np.full((12, 12), 32768, dtype=np.uint16)).save(odd / "sixteen_bit.png")
    (odd / ".DS_Store").write_bytes(b"\x00\x01")
    (odd / "Thumbs.db").write_bytes(b"\x00\x01")
    (odd / "notes.txt").write_text("not an image")
    (root / "train" / ".hidden_class").mkdir()
    return root


def test_every_image_kind_becomes_rgb_and_junk_is_ignored(tmp_path: Path) -> None:
    root = _odd_images_folder(tmp_path / "odd")
    dataset = load_dataset(str(root), [8])
    assert dataset.classes == ["café olé", "ñandú azul"]
    train = dataset.train[8]
    assert train.x.shape == (4 + 5 + 4, 8, 8, 3) and train.x.dtype == np.uint8
    assert np.bincount(train.y).tolist() == [9, 4]
    odd = root / "train" / "café olé"
    assert decode_image(odd / "transparent.png").getpixel((5, 5)) == (255, 255, 255)
    assert decode_image(odd / "gray.png").getpixel((5, 5)) == (90, 90, 90)
    red, green, blue = decode_image(odd / "cmyk.jpg").getpixel((5, 5))
    assert red > 200 and green < 60 and blue < 60
    assert abs(decode_image(odd / "sixteen_bit.png").getpixel((5, 5))[0] - 128) <= 1
    assert decode_image(odd / "palette.gif").mode == "RGB"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((6, 12, 3), dtype=np.uint8)
    pixels[:, :6] = (255, 0, 0)  # left half red
    pixels[:, 6:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: displaying needs a 90 degree clockwise turn
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    upright = decode_image(path)
    assert upright.size == (6, 12)
    assert upright.getpixel((3, 1))[0] > 200  # the red half is now on top
    assert upright.getpixel((3, 10))[2] > 200


def test_corrupt_images_are_listed_or_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_image_folder(tmp_path / "scenes", {"a": (10, 10, 10), "b": (240, 240, 240)})
    broken = root / "train" / "a" / "broken.jpg"
    broken.write_bytes(b"this is not a jpeg")
    with pytest.raises(UserError, match=r"1 image\(s\) cannot be read: .*broken\.jpg.*--skip-bad-images"):
        load_dataset(str(root), [8])
    dataset = load_dataset(str(root), [8], skip_bad_images=True)
    warning = capsys.readouterr().err
    assert (
        warning.startswith("scenetune: warning: skipped 1 unreadable image(s):") and "broken.jpg" in warning
    )
    assert "UserWarning" not in warning and "warnings.warn" not in warning
    assert len(dataset.train[8]) == 8
    # The cache remembers the bad file: without the flag the error comes back.
    with pytest.raises(UserError, match="broken.jpg"):
        load_dataset(str(root), [8])


def test_at_most_ten_bad_images_are_named(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "scenes", {"a": (10, 10, 10)})
    for index in range(13):
        (root / "train" / "a" / f"bad{index:02d}.png").write_bytes(b"junk")
    with pytest.raises(UserError) as caught:
        load_dataset(str(root), [8])
    message = str(caught.value)
    assert message.startswith("13 image(s) cannot be read") and message.endswith("or pass --skip-bad-images")
    assert "and 3 more" in message and message.count("/a/bad") == 10


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda root: root / "missing", r"dataset directory .*missing does not exist"),
        (lambda root: ((root / "test").rename(root / "elsewhere"), root)[1], r"has no test/ folder"),
        (lambda root: (root / "train" / "empty").mkdir() or root, r"class folder .*empty holds no images"),
        (
            lambda root: write_image(root / "test" / "unknown" / "x.png", (1, 2, 3)) and root,
            r"test class folder .*unknown has no counterpart",
        ),
    ],
    ids=["missing-directory", "missing-test", "empty-class", "test-only-class"],
)
def test_bad_layouts_fail_with_one_sentence(image_folder: Path, breakage, expected: str) -> None:
    root = breakage(image_folder)
    with pytest.raises(UserError, match=expected) as caught:
        load_dataset(str(root), [8])
    assert "\n" not in str(caught.value)


def test_cache_is_reused_and_rebuilt_when_a_file_changes(
    image_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[Path] = []
    real_decode = data.decode_image
    monkeypatch.setattr(data, "decode_image", lambda path: decoded.append(path) or real_decode(path))
    first = load_dataset(str(image_folder), [8, 16])
    assert len(decoded) == 18  # each file decoded once, for both sizes
    decoded.clear()
    again = load_dataset(str(image_folder), [8, 16])
    assert decoded == []
    assert np.array_equal(first.train[16].x, again.train[16].x)
    changed = image_folder / "train" / "coast" / "0.png"
    Image.new("RGB", (12, 12), (255, 255, 0)).save(changed)
    rebuilt = load_dataset(str(image_folder), [8])
    assert len(decoded) == 18 and rebuilt.fingerprint != first.fingerprint
    coast = rebuilt.classes.index("coast")
    assert rebuilt.train[8].x[rebuilt.train[8].y == coast][0].mean(axis=(0, 1)).round().tolist() == [
        255.0,
        255.0,
        0.0,
    ]


def test_a_copy_of_the_folder_keeps_its_fingerprint_and_cache(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = load_dataset(str(image_folder), [8])
    decoded: list[Path] = []
    real_decode = data.decode_image
    monkeypatch.setattr(data, "decode_image", lambda path: decoded.append(path) or real_decode(path))
    # Copied without its times (as an archive or another disk gives it back): every file is newer.
    copy = shutil.copytree(image_folder, tmp_path / "copied", copy_function=shutil.copy)
    copied = load_dataset(str(copy), [8])
    assert copied.fingerprint == original.fingerprint and decoded == []
    assert np.array_equal(copied.train[8].x, original.train[8].x)
    # An experiment recorded by an earlier version (sizes and times) still matches the untouched folder.
    listing = data.list_image_folder(image_folder)
    assert original.matches(data.stat_fingerprint(listing)) and not copied.matches(
        data.stat_fingerprint(listing)
    )
    write_image(copy / "test" / "forest" / "0.png", (20, 140, 31))  # its colour one value apart
    assert load_dataset(str(copy), [8]).fingerprint != original.fingerprint


def test_digits_are_rgb_upscaled_with_a_fixed_split() -> None:
    dataset = load_dataset("digits", [8, 16])
    assert dataset.classes == [str(d) for d in range(10)]
    assert dataset.train[16].x.shape == (1347, 16, 16, 3)
    assert dataset.test[8].x.shape == (450, 8, 8, 3)
    assert np.array_equal(dataset.test[8].y, load_dataset("digits", [8]).test[8].y)
    pixel = dataset.train[16].x[0, 8, 8]
    assert pixel[0] == pixel[1] == pixel[2]


def test_validation_is_stratified_seeded_or_the_test_folder() -> None:
    dataset = load_dataset("digits", [8])
    split = make_trial_data(dataset, 0.15, False, seed=3).at_size(8)
    same = make_trial_data(dataset, 0.15, False, seed=3).at_size(8)
    other = make_trial_data(dataset, 0.15, False, seed=4).at_size(8)
    assert len(split["val"]) == round(0.15 * 1347) and len(split["train"]) + len(split["val"]) == 1347
    assert np.array_equal(split["val"].x, same["val"].x) and not np.array_equal(
        split["val"].x, other["val"].x
    )
    train_share = np.bincount(split["train"].y) / len(split["train"])
    val_share = np.bincount(split["val"].y) / len(split["val"])
    assert np.abs(train_share - val_share).max() < 0.02
    study_protocol = make_trial_data(dataset, 0.15, True, seed=3).at_size(8)
    assert study_protocol["val"] is study_protocol["test"] and len(study_protocol["train"]) == 1347
