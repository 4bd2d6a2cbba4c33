"""Task loading: the built-in digits task, .npz arrays, image folders and their error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nasflow.errors import ConfigError, DataError, UnknownNameError
from nasflow.tasks import (
    BUILTIN_DATASETS,
    Task,
    load_task,
    stratified_split,
    stratified_subset,
    task_from_arrays,
)


def _all_labels(task: Task) -> np.ndarray:
    return np.concatenate([task.y_train, task.y_val, task.y_test])


def _toy_arrays(n_per_class: int = 10, classes: int = 3, shape: tuple[int, ...] = (6, 6)):
    rng = np.random.default_rng(1)
    x = rng.random((n_per_class * classes, *shape), dtype=np.float32)
    y = np.repeat(np.arange(classes), n_per_class)
    return x, y


def _save_npz(tmp_path: Path, name: str = "data.npz", **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


# -- digits ------------------------------------------------------------------------------------
def test_digits_shapes_types_and_range() -> None:
    task = load_task("digits")
    assert task.name == "digits"
    assert task.input_shape == (1, 8, 8)
    assert task.num_classes == 10
    assert task.class_names == [str(d) for d in range(10)]
    for x, y in ((task.x_train, task.y_train), (task.x_val, task.y_val), (task.x_test, task.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert set(np.unique(y)) == set(range(10))  # stratified: every class in every split
    assert len(_all_labels(task)) == 1797
    sizes = task.describe()["sizes"]
    assert abs(sizes["train"] / 1797 - 0.6) < 0.01
    assert abs(sizes["val"] / 1797 - 0.2) < 0.01


def test_digits_split_depends_only_on_seed() -> None:
    a, b, c = load_task(split_seed=0), load_task(split_seed=0), load_task(split_seed=1)
    assert np.array_equal(a.x_val, b.x_val) and np.array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_val, c.x_val)
    np.random.seed(123)  # the global state must not matter
    assert np.array_equal(load_task(split_seed=0).x_test, a.x_test)


def test_split_indices_are_disjoint_and_cover_everything() -> None:
    labels = np.repeat(np.arange(4), [5, 9, 20, 7])
    train, val, test = stratified_split(labels, 0.2, 0.2, seed=3)
    everything = np.concatenate([train, val, test])
    assert sorted(everything.tolist()) == list(range(len(labels)))
    for part in (train, val, test):
        assert set(labels[part]) == {0, 1, 2, 3}


def test_custom_fractions_and_bad_fractions() -> None:
    task = load_task("digits", val_fraction=0.1, test_fraction=0.3)
    assert abs(len(task.y_test) / 1797 - 0.3) < 0.01
    for bad in ({"val_fraction": 0.0}, {"test_fraction": 1.2}, {"val_fraction": 0.5, "test_fraction": 0.5}):
        with pytest.raises(ConfigError, match="fraction"):
            load_task("digits", **bad)


def test_stratified_subset_keeps_every_class_and_is_deterministic() -> None:
    labels = np.repeat(np.arange(3), [50, 10, 3])
    subset = stratified_subset(labels, 0.1, seed=0)
    assert set(labels[subset]) == {0, 1, 2}
    assert np.array_equal(subset, stratified_subset(labels, 0.1, seed=0))
    assert len(stratified_subset(labels, 1.0)) == len(labels)


def test_unknown_dataset_lists_builtins_and_mentions_data() -> None:
    assert "digits" in BUILTIN_DATASETS
    with pytest.raises(UnknownNameError, match="digits") as info:
        load_task("cifar11")
    assert "data=" in str(info.value)


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        load_task("digits", image_size=16)


# -- .npz arrays -------------------------------------------------------------------------------
def test_npz_three_dimensional_images_get_a_channel(tmp_path: Path) -> None:
    x, y = _toy_arrays()
    task = load_task(data=_save_npz(tmp_path, X=x, y=y))
    assert task.name == "data"
    assert task.input_shape == (1, 6, 6)
    assert task.num_classes == 3
    assert len(_all_labels(task)) == 30


def test_npz_channels_first_and_channels_last(tmp_path: Path) -> None:
    x, y = _toy_arrays(shape=(3, 5, 7))
    assert load_task(data=_save_npz(tmp_path, "nchw.npz", X=x, y=y)).input_shape == (3, 5, 7)
    last = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # (N, 5, 7, 3)
    task = load_task(data=_save_npz(tmp_path, "nhwc.npz", X=last, y=y))
    assert task.input_shape == (3, 5, 7)
    # the transposition must give back exactly the channel-first images
    first = task_from_arrays(x, y, split_seed=2)
    assert np.array_equal(task_from_arrays(last, y, split_seed=2).x_val, first.x_val)
    # ambiguous shapes read channel-first unless told otherwise
    odd = np.zeros((30, 3, 8, 3), dtype=np.float32)
    assert task_from_arrays(odd, y).input_shape == (3, 8, 3)
    assert task_from_arrays(odd, y, layout="nhwc").input_shape == (3, 3, 8)


def _stack(task: Task) -> np.ndarray:
    return np.concatenate([task.x_train, task.x_val, task.x_test])


def test_npz_uint8_is_scaled_and_string_labels_become_class_names(tmp_path: Path) -> None:
    x = np.full((12, 4, 4), 255, dtype=np.uint8)
    x[:6] = 0
    y = np.array(["dog", "cat", "bird"] * 4)
    task = load_task(data=_save_npz(tmp_path, X=x, y=y), val_fraction=0.25, test_fraction=0.25)
    assert task.class_names == ["bird", "cat", "dog"]
    assert _stack(task).dtype == np.float32
    assert set(np.unique(_stack(task))) == {0.0, 1.0}
    # label codes follow the sorted class names
    names = np.array(task.class_names)[_all_labels(task)]
    assert sorted(names.tolist()) == sorted(y.tolist())


def test_npz_split_is_deterministic(tmp_path: Path) -> None:
    x, y = _toy_arrays()
    path = _save_npz(tmp_path, X=x, y=y)
    assert np.array_equal(load_task(data=path, split_seed=5).x_val, load_task(data=path, split_seed=5).x_val)


# -- .npz errors -------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_task(data=tmp_path / "nope.npz")


def test_npz_without_x_or_y_names_the_keys_found(tmp_path: Path) -> None:
    x, y = _toy_arrays()
    with pytest.raises(DataError, match=r"'images'.*'labels'|'labels'.*'images'"):
        load_task(data=_save_npz(tmp_path, images=x, labels=y))


def test_npz_length_mismatch(tmp_path: Path) -> None:
    x, y = _toy_arrays()
    with pytest.raises(DataError, match="30 images.*29 labels"):
        load_task(data=_save_npz(tmp_path, X=x, y=y[:-1]))


def test_npz_wrong_number_of_dimensions(tmp_path: Path) -> None:
    x, y = _toy_arrays()
    with pytest.raises(DataError, match="dimensions"):
        load_task(data=_save_npz(tmp_path, X=x.reshape(30, -1), y=y))


def test_npz_non_numeric_images(tmp_path: Path) -> None:
    x = np.array([["a"] * 4] * 30).reshape(30, 2, 2)
    _, y = _toy_arrays()
    with pytest.raises(DataError, match="non-numeric"):
        load_task(data=_save_npz(tmp_path, X=x, y=y))


def test_npz_nan_or_inf(tmp_path: Path) -> None:
    x, y = _toy_arrays()
    x[3, 0, 0] = np.nan
    x[7, 1, 1] = np.inf
    with pytest.raises(DataError, match="NaN or infinite.*2 of 30"):
        load_task(data=_save_npz(tmp_path, X=x, y=y))


def test_npz_only_one_class(tmp_path: Path) -> None:
    x, _ = _toy_arrays()
    with pytest.raises(DataError, match="only one class"):
        load_task(data=_save_npz(tmp_path, X=x, y=np.full(30, 7)))


def test_class_with_too_few_examples_names_the_class(tmp_path: Path) -> None:
    x, y = _toy_arrays()
    y = np.array(["big"] * 28 + ["tiny"] * 2)
    with pytest.raises(DataError, match=r"class 'tiny' has only 2 example\(s\).*at least 3"):
        load_task(data=_save_npz(tmp_path, X=x, y=y))


def test_file_that_is_neither_npz_nor_folder(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(DataError, match=r"neither a \.npz file nor a folder"):
        load_task(data=path)


def test_corrupt_npz(tmp_path: Path) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError, match="not a .npz archive"):
        load_task(data=path)


def test_object_labels_are_refused_without_unpickling(tmp_path: Path) -> None:
    x, _ = _toy_arrays()
    y = np.array([("a",), ("b", 1)] * 15, dtype=object)
    with pytest.raises(DataError, match="object array"):
        load_task(data=_save_npz(tmp_path, X=x, y=y))


# -- image folders -----------------------------------------------------------------------------
def _write_images(folder: Path, count: int, color: bool, suffix: str = ".png", size: int = 10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(count):
        shape = (size, size + 3, 3) if color else (size, size + 3)
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels, mode="RGB" if color else "L").save(folder / f"img{i}{suffix}")


def test_image_folder_rgb(tmp_path: Path) -> None:
    _write_images(tmp_path / "data" / "cats", 5, color=True)
    _write_images(tmp_path / "data" / "dogs", 5, color=True, suffix=".jpg")
    (tmp_path / "data" / "dogs" / "notes.txt").write_text("ignored")
    task = load_task(data=tmp_path / "data", image_size=12)
    assert task.name == "data"
    assert task.input_shape == (3, 12, 12)
    assert task.class_names == ["cats", "dogs"]
    images = _stack(task)
    assert images.dtype == np.float32 and images.min() >= 0.0 and images.max() <= 1.0
    assert len(images) == 10


def test_image_folder_auto_mode_detects_grayscale(tmp_path: Path) -> None:
    _write_images(tmp_path / "a", 3, color=False)
    _write_images(tmp_path / "b", 3, color=False, suffix=".bmp")
    assert load_task(data=tmp_path).input_shape == (1, 32, 32)
    assert load_task(data=tmp_path, mode="rgb").input_shape == (3, 32, 32)
    # one colour image anywhere makes the whole folder RGB
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "b" / "color.webp")
    assert load_task(data=tmp_path).input_shape == (3, 32, 32)
    assert load_task(data=tmp_path, mode="grayscale").input_shape == (1, 32, 32)


def test_image_folder_bad_options(tmp_path: Path) -> None:
    _write_images(tmp_path / "a", 3, color=False)
    _write_images(tmp_path / "b", 3, color=False)
    with pytest.raises(ConfigError, match="mode"):
        load_task(data=tmp_path, mode="cmyk")
    with pytest.raises(ConfigError, match="image_size"):
        load_task(data=tmp_path, image_size=0)
    with pytest.raises(ConfigError, match="layout"):
        load_task(data=tmp_path, layout="nhwc")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_task(data=tmp_path / "missing_folder")


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class sub-folders"):
        load_task(data=tmp_path)


def test_folder_of_loose_images_explains_the_layout(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(DataError, match="sub-folder"):
        load_task(data=tmp_path)


def test_class_folder_without_images(tmp_path: Path) -> None:
    _write_images(tmp_path / "a", 3, color=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder '.*/b' contains no images"):
        load_task(data=tmp_path)


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    _write_images(tmp_path / "a", 3, color=False)
    _write_images(tmp_path / "b", 3, color=False)
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png"):
        load_task(data=tmp_path)


def test_image_folder_with_one_class(tmp_path: Path) -> None:
    _write_images(tmp_path / "only", 5, color=False)
    with pytest.raises(DataError, match="only one class"):
        load_task(data=tmp_path)


def test_image_folder_class_too_small(tmp_path: Path) -> None:
    _write_images(tmp_path / "many", 6, color=False)
    _write_images(tmp_path / "few", 2, color=False)
    with pytest.raises(DataError, match="'few' has only 2"):
        load_task(data=tmp_path)
