"""scripts/stream_check.py at a small size: the first rows of a parquet set are captioned through hf:."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_small_set_first_rows_are_captioned_and_rss_is_reported(tmp_path) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "stream_check.py"), "--rows", "2000", "--limit", "50"]
    command += ["--baseline-rows", "200", "--workdir", str(tmp_path / "work"), "--keep"]
    done = subprocess.run(command, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    large = result["large"]
    assert result["ok"] and large["rows"] == 2000 and large["captioned"] == 50 and large["failed"] == 0
    assert large["first_id"] == "img-0000000" and large["last_id"] == "img-0000049"
    assert 0 < large["peak_rss_mb"] <= result["bound_mb"] and result["baseline"]["rows"] == 200
    assert isinstance(result["rss_growth_mb"], float)
    # the set was really written as parquet with Image features, and only the asked rows were captioned
    store = next((tmp_path / "work" / "run-2000" / "captions").glob("*.jsonl"))
    assert len(store.read_text().splitlines()) == 50
    assert len(list((tmp_path / "work" / "set-2000" / "data").glob("*.parquet"))) == 1
