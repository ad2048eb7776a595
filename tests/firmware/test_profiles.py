"""Board profiles load through the agent's own config code and say what differs per board."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError
from firmware_configs.profiles import (
    PROFILES_DIR,
    available_profiles,
    load_profile,
    load_profile_file,
)

BOARDS = ("cm4", "pi3bplus", "pi4", "pi5", "zero2w")


def test_one_profile_per_board() -> None:
    assert available_profiles() == BOARDS


@pytest.mark.parametrize("name", BOARDS)
def test_profile_fits_its_board(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.model.bundle_variant == "int8"
    assert profile.service.memory_max_mb < profile.ram_mb
    assert profile.service.threads <= profile.cores
    assert profile.service.cpu_quota_percent <= 100 * profile.cores
    assert profile.thermal.throttle_c < profile.thermal.critical_c <= 85.0
    assert profile.thermal.notes


def test_boards_differ_where_they_should() -> None:
    zero, pi3, pi5 = load_profile("zero2w"), load_profile("pi3bplus"), load_profile("pi5")
    assert zero.capture.interface == "wlan0"
    assert {load_profile(n).capture.interface for n in BOARDS if n != "zero2w"} == {"eth0"}
    assert zero.ram_mb == 512
    assert pi3.ram_mb == 1024
    assert zero.service.memory_max_mb < pi3.service.memory_max_mb < pi5.service.memory_max_mb
    assert zero.queues.queue_size < pi5.queues.queue_size
    assert pi5.thermal.active_cooling
    assert pi3.thermal.throttle_c == 60.0  # the 3B+'s soft limit


def test_unknown_profile_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown profile 'pi9' \(valid: cm4, pi3bplus, pi4"):
        load_profile("pi9")


def _broken(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (PROFILES_DIR / "pi4.toml").read_text()
    assert old in text
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "memory_max_mb = 512",
            "memory_max_mb = 2048",
            r"^pi4\.toml: service\.memory_max_mb: must be below ram_mb \(1024\), got 2048$",
        ),
        ("threads = 3", "threads = 8", r"^pi4\.toml: service\.threads: must be <= cores"),
        (
            'bundle_variant = "int8"',
            'bundle_variant = "int4"',
            r"^pi4\.toml: model\.bundle_variant",
        ),
        (
            "throttle_c = 80.0",
            "throttle_c = 90.0",
            r"^pi4\.toml: thermal\.throttle_c: must be below",
        ),
        ('interface = "eth0"', 'interface = "eth0/x"', r"^pi4\.toml: capture\.interface"),
        ("[journal]", "[journal]\nkeep_days = 3", r"^pi4\.toml: journal\.keep_days: unknown key"),
        ("cores = 4", 'cores = "4"', r"^pi4\.toml: cores: must be an integer"),
    ],
)
def test_bad_profile_names_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_profile_file(_broken(tmp_path, "pi4", old, new))


def test_profile_name_must_match_its_file(tmp_path: Path) -> None:
    path = _broken(tmp_path, "pi4b", 'name = "pi4"', 'name = "pi4"')
    with pytest.raises(ConfigError, match=r"^pi4b\.toml: name: must match the file name 'pi4b'$"):
        load_profile_file(path)


def test_unreadable_profile_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_profile_file(tmp_path / "absent.toml")
