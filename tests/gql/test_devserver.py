"""The dev server's banner names a `restoration submit` command that runs where the person is."""

from __future__ import annotations

from pathlib import Path

import pytest

from gql.devserver import submit_command


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "project" / ".venv" / "bin" / "restoration"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_a_script_under_the_working_directory_is_named_relative_to_it(
    script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    cwd = script.parents[2]
    assert submit_command(argv0=".venv/bin/restoration", cwd=cwd) == ".venv/bin/restoration"
    assert submit_command(argv0=str(script), cwd=cwd) == ".venv/bin/restoration"


def test_a_script_elsewhere_is_named_by_its_absolute_path(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    elsewhere = tmp_path / "photos"
    elsewhere.mkdir()
    assert submit_command(argv0=str(script), cwd=elsewhere) == str(script)


def test_a_script_found_on_path_is_named_plainly(script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert submit_command(argv0=str(script), cwd=tmp_path) == "restoration"


def test_a_path_with_spaces_is_quoted_for_the_shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    script = tmp_path / "my photos" / "restoration"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert submit_command(argv0=str(script), cwd=elsewhere) == f"'{script}'"
