"""A whole suite under a launcher: two CPU processes (torchrun, gloo) give the results of one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.test_run_folder import comparable, pancap, suite_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_run_a_suite_to_the_results_of_one(tmp_path):
    env = {**os.environ, "PANCAP_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    suite = suite_file(tmp_path, limit=5)
    pancap("run", str(suite), "--out", str(tmp_path / "one"), env=env)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), "-m", "pancap_retrieval.cli", "run", str(suite), "--out", str(tmp_path / "two"),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    two = tmp_path / "two"
    assert comparable(two) == comparable(tmp_path / "one")
    assert not list(two.glob("images/*/layouts.jsonl.rank*")) and not list(two.glob("captions/*.rank*"))
    layouts = (two / "images" / "detector" / "layouts.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["example_id"] for line in layouts) == sorted(
        json.loads(line)["example_id"] for line in (tmp_path / "one" / "images" / "detector" / "layouts.jsonl").read_text().splitlines()
    )
