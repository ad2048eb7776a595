"""The README's Quickstart holds on a bare machine, checked in seconds.

``make demo`` / ``make test`` expand to bootstrap and then the command; ``scripts/bootstrap.sh``
run on a machine with none of its tools (``apt-get``, ``id`` and ``python3`` stubbed: the real ones
would take minutes and root) installs exactly the Debian packages the Quickstart lists and the
package with its extras, and a second run installs nothing again. Every ``iotids`` line of the
README's ``sh`` blocks is accepted by the command's own parser (the recipes themselves run in
test_readme_recipes.py, which is slow), and every block passes shellcheck when it is installed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.cli import build_parser
from tests.docs.test_readme_recipes import readme_commands

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
QUICKSTART = ("## Quickstart",)
# What bootstrap.sh needs from the machine besides its stubs (coreutils it calls).
TOOLS = ("dirname", "basename", "ls", "touch", "mkdir", "cp")


def _sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _apt_line() -> list[str]:
    """The packages of the Quickstart's ``apt-get install`` line."""
    line = next(c for c in readme_commands(README, QUICKSTART) if "apt-get install" in c)
    return line.split("apt-get install", 1)[1].split()


def _bootstrap_packages() -> set[str]:
    text = (REPO / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    return {p for group in re.findall(r"need\+=\(([^)]*)\)", text) for p in group.split()}


def test_make_targets_run_bootstrap_then_the_command() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed (the Quickstart's apt-get line installs it)")
    expected = {"demo": ".venv/bin/iotids demo", "test": ".venv/bin/python -m pytest -q -n 2"}
    targets = [c.split()[1] for c in readme_commands(README, QUICKSTART) if c.startswith("make ")]
    assert sorted(targets) == sorted(expected)
    for target in targets:
        # Under `make test` this runs inside make: its MAKELEVEL/MAKEFLAGS would make the
        # inner make print "Entering directory" lines around the commands.
        env = {k: v for k, v in os.environ.items() if k not in {"MAKELEVEL", "MAKEFLAGS", "MFLAGS"}}
        dry = subprocess.run(
            ["make", "--no-print-directory", "-n", target],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert dry.stdout.splitlines() == ["scripts/bootstrap.sh", expected[target]]


def test_the_apt_line_is_what_bootstrap_installs() -> None:
    listed = _apt_line()
    assert "mosquitto-clients" in listed
    assert set(listed) - {"make"} == _bootstrap_packages()


def _stubs(folder: Path, log: Path) -> dict[str, str]:
    """A PATH with none of bootstrap's tools: apt-get and python3 record their arguments."""
    bin_ = folder / "bin"
    bin_.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_ / tool).symlink_to(found)
    stubs = {
        "id": "echo 0\n",  # root: no sudo needed
        "apt-get": f'echo "apt-get $*" >> "{log}"\n',
        # python3 -m venv DIR makes DIR/bin/python, another recording stub; no ensurepip here
        "python3": (
            f'echo "$(basename "$0") $*" >> "{log}"\n'
            'case "$*" in *ensurepip*) exit 1;; esac\n'
            'if [ "$1" = -m ] && [ "$2" = venv ]; then\n'
            '  mkdir -p "$3/bin"; cp "$0" "$3/bin/python"\n'
            "fi\n"
        ),
    }
    for name, body in stubs.items():
        path = bin_ / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    return {"PATH": str(bin_), "HOME": str(folder), "IOTIDS_VENV": str(folder / "venv")}


def test_bootstrap_on_a_bare_machine(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    env = _stubs(tmp_path, log)
    script = REPO / "scripts" / "bootstrap.sh"
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run([bash, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    install = next(c for c in calls if c.startswith("apt-get install"))
    asked = set(install.split()) - {"apt-get", "install", "-y", "-qq", "--no-install-recommends"}
    # what is missing here (some checks look at absolute paths this machine may have)
    assert {"python3-venv", "mosquitto-clients", "mtools", "shellcheck"} <= asked
    assert asked <= set(_apt_line())
    assert "apt-get update -qq" in calls
    assert f"python3 -m venv {tmp_path / 'venv'}" in calls
    assert "python -m pip install -q -e .[train,dev,demo,console]" in calls
    assert (tmp_path / "venv" / ".iotids-installed").is_file()
    log.write_text("")
    again = subprocess.run([bash, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert not [c for c in log.read_text().splitlines() if "pip install" in c]  # done once


def _iotids_lines() -> list[str]:
    commands = []
    for block in _sh_blocks():
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words = words[1:]  # an environment assignment before the command
            if words and words[0] == "iotids":
                commands.append(words[1:])
    return commands


def test_every_iotids_line_of_the_readme_parses() -> None:
    lines = _iotids_lines()
    assert len(lines) >= 10
    parser, _ = build_parser()
    for words in lines:
        try:
            parser.parse_args(words)
        except SystemExit as exc:  # argparse's usage error
            pytest.fail(f"README: iotids {' '.join(words)} is refused ({exc})")


def test_the_readme_shell_blocks_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (bootstrap.sh installs it)")
    for index, block in enumerate(_sh_blocks()):
        path = tmp_path / f"block{index}.sh"
        path.write_text(block)
        done = subprocess.run(
            [shellcheck, "-s", "sh", str(path)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"README sh block {index}:\n{block}\n{done.stdout}"
    assert os.path.getsize(tmp_path / "block0.sh") > 0
