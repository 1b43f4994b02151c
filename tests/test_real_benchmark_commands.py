"""Every command of README's "The real benchmark" parses: the pancap ones through the real click tree (options,
arguments and value types, nothing run), the shell ones as bash syntax; every file they name from the repository
exists."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest

from pancap_retrieval.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def real_benchmark_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The real benchmark\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def parse(args: list[str]) -> click.Context:
    """The context of the command ``args`` names, parsed as click parses it before running (no callback)."""
    ctx = cli.make_context("pancap", list(args))
    while isinstance(ctx.command, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, command, rest = ctx.command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def test_the_section_has_the_steps():
    commands = real_benchmark_commands()
    assert len(commands) >= 5
    assert any("docci_pancapchain_vs_llava.yaml" in c for c in commands)
    assert any(c.startswith(".venv/bin/pancap convert llava") for c in commands)


@pytest.mark.parametrize("command", real_benchmark_commands())
def test_command_parses(command):
    words = shlex.split(command)
    if words[0] == ".venv/bin/pancap":
        ctx = parse(words[1:])
        assert not ctx.args, f"{command}: left over {ctx.args}"
        for word in words[1:]:
            if word.startswith(("eval_suites/", "scripts/")):
                assert (ROOT / word).is_file(), word
    else:
        assert words[0] == "bash" and (ROOT / words[1]).is_file(), command
        subprocess.run(["bash", "-n", str(ROOT / words[1])], check=True)


def test_a_wrong_option_would_be_caught():
    with pytest.raises(click.UsageError, match="No such option"):
        parse(["run", "eval_suites/sample.yaml", "--limt", "3"])
    with pytest.raises(click.BadParameter):
        parse(["run", "eval_suites/sample.yaml", "--limit", "many"])
