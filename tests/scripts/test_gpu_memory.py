"""scripts/gpu_memory.py: the memory plan of the DOCCI captioners, and README's table is the one it prints."""

from __future__ import annotations

import json
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_plan_counts_the_real_architectures_and_readme_shows_it(load_script, json_native, capsys):
    script = load_script("gpu_memory")
    script.main([])
    plans = {p["captioner"]: p for p in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(plans) == {"pancapchain", "sharegpt4v", "llava-1.5"}
    chain = plans["pancapchain"]
    assert json_native(chain)
    assert 13.3e9 < chain["parameters"] < 13.4e9  # LLaVA-1.5-13B with the CLIP-L/336 tower and projector
    assert chain["kv_cache_mib_per_token"] == 0.781  # 2 x 40 layers x 5120 x 2 bytes
    assert chain["tokens_per_row"] == 2 * 616 + 128 + 3 * 1024
    assert plans["llava-1.5"]["max_new_tokens"] == 512  # the baselines' own default
    readme = README.read_text(encoding="utf-8")
    for plan in plans.values():
        row = next(
            line for line in readme.splitlines()
            if line.startswith(f"| `{plan['captioner']}` | {plan['architecture']} |")
        )
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[5:9] == [
            str(plan["tokens_per_row"]), f"{plan['kv_cache_gib_per_row']} GiB",
            str(plan["batch_on_80_gib"]), str(plan["batch_on_141_gib"]),
        ]
