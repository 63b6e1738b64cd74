"""The README's promises: its two commands are the ones CI runs, and its Python example runs."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_main_command_and_the_test_command():
    main_command, test_command = [b.strip() for b in _blocks("bash")[:2]]
    assert main_command.startswith("python3 -m venv .venv") and main_command.endswith("genmodels bench --suite quick")
    assert test_command.startswith("python3 -m venv .venv") and "pytest" in test_command
    from genmodels.recipes import suite_recipes

    assert suite_recipes("quick"), "the main command's suite must have recipes"
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines(), ".ci/run must run exactly the README's test command"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [example] = _blocks("python")
    exec(compile(example, "README.md", "exec"), {})  # noqa: S102 - our own documentation
    assert (tmp_path / "runs" / "readme-fvsbn" / "results.json").is_file()
