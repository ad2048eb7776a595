"""A hostile ``[train]`` file or mapping file is one ConfigError line naming the key, never a
traceback: wrong types, non-finite numbers, sizes that only exhaust memory, deep nesting."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, load_config

BASE = '[train]\ndataset = "captures"\npath = "."\nmodel = "cnn"\nout = "o"\n'


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('dropout = "x"', "train.dropout"),
        ('target_fpr = "x"', "train.target_fpr"),
        ('test_files = "ab"', "train.test_files"),
        ("test_files = 5", "train.test_files"),
        ('seed = "a"', "train.seed"),
        ("seed = -5", "train.seed"),
        ("learning_rate = -1.0", "train.learning_rate"),
        ("learning_rate = inf", "train.learning_rate"),
        ("onset_weight = inf", "train.onset_weight"),
        ("units = 1000000000", "train.units"),
        ("seeds = 10000", "train.seeds"),
        ('step = "-1s"', "train.step"),
        ('step = "99999999p"', "train.step"),
        ("mapping = 5", "train.mapping"),
        ("max_rows = -1", "train.max_rows"),
        ('strict = "no"', "train.strict"),
    ],
)
def test_a_bad_value_names_its_key(tmp_path: Path, line: str, key: str) -> None:
    toml = tmp_path / "t.toml"
    toml.write_text(BASE + line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{key}[:.\[]"):
        load_config(toml, {})


def test_a_train_key_that_is_not_a_table_or_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    toml = tmp_path / "t.toml"
    toml.write_text("train = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a table"):
        load_config(toml, {})
    toml.write_text("x = " + "[" * 50_000 + "]" * 50_000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(toml, {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[rule]]\nglob = "*"\nlabel = "x"\nstart = "x"\n', r"rule\[0\]\.start: must be a number"),
        ('[[rule]]\nglob = "*"\nlabel = "x"\naddress = 5\n', r"rule\[0\]\.address: must be a str"),
        ('[[rule]]\nglob = "*"\nlabel = "x"\naddress = "10.0.0.999"\n', r"not an IP address"),
        ("rule = [1, 2]\n", r"rule\[0\]: must be a table"),
        ("x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n", "nested too deeply"),
        ("# " + "x" * (2 << 20) + "\n", "larger than"),
    ],
)
def test_a_hostile_mapping_file_is_refused_before_training(
    tmp_path: Path, text: str, message: str
) -> None:
    mapping = tmp_path / "map.toml"
    mapping.write_text(text, encoding="utf-8")
    toml = tmp_path / "t.toml"
    toml.write_text(BASE, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^train\.mapping: .*{message}"):
        load_config(toml, {"mapping": str(mapping)})
