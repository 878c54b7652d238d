"""Every command and subcommand answers --help (and the help renders: no markup surprises)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ffrtmp.cli.app import app


def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if hasattr(group, "commands"):  # a group (typer bundles its own click, so no isinstance)
        for name, command in group.commands.items():
            found += commands(command, (*path, name))
    return found


ALL = commands(typer.main.get_command(app))


def test_the_spec_commands_exist() -> None:
    for path in [("master",), ("worker",), ("demo",), ("top",), ("scenarios",), ("jobs", "submit"), ("jobs", "list"),
                 ("jobs", "show"), ("jobs", "logs"), ("jobs", "cancel"), ("jobs", "retry"), ("nodes", "list"),
                 ("nodes", "show"), ("nodes", "drain"), ("keys", "generate"), ("keys", "api", "create"),
                 ("keys", "quota", "set")]:
        assert path in ALL, path


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "ffrtmp")
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
