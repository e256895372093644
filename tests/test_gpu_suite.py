"""The accelerator benchmark cannot rot: its smoke run (every part at tiny sizes, on the CPU) finishes, fills every
part with its rows and writes its JSON and table. Its figures are not checked: speed is measured, never asserted."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_gpu_suite_smoke_run_fills_every_part(tmp_path):
    out = tmp_path / "suite.json"
    done = subprocess.run([sys.executable, "benchmarks/gpu_suite.py", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "elapsed, ~" in done.stdout and "of the budget left" in done.stdout
    results = json.loads(out.read_text())
    assert results["sizes"] == "smoke" and results["device"].startswith("cpu")
    parts = {part["part"]: part for part in results["parts"]}
    assert list(parts) == ["speed:mountaincar", "brax_ppo", "sweep", "customization"]
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(parts, "ok")
    rows = {name: [row["row"] for row in part["rows"]] for name, part in parts.items()}
    assert rows == {
        "speed:mountaincar": ["env alone, mountaincar", "Soft PPO training, mountaincar"],
        "brax_ppo": ["our PPO, mountaincar", "Brax's PPO, mountaincar"],
        "sweep": ["2 seeds, one vmapped sweep", "2 runs one after another (one compiled chunk)"],
        "customization": ["prior: Soft PPO", "Residual PPO from the prior",
                          "fair bound: Soft PPO on r + r_R at the prior's α"],
    }
    every_row = [row for part in results["parts"] for row in part["rows"]]
    assert all(row["steps_per_s"] > 0 and row["peak_mib"] > 0 for row in every_row)
    speed, brax = parts["speed:mountaincar"]["rows"], parts["brax_ppo"]["rows"]
    assert speed[1]["of_env_alone"] == speed[1]["steps_per_s"] / speed[0]["steps_per_s"]
    assert brax[1]["ours_over_brax"] == brax[0]["steps_per_s"] / brax[1]["steps_per_s"]
    prior, residual, bound = parts["customization"]["rows"]
    assert [r["algo"] for r in (prior, residual, bound)] == ["soft_ppo", "residual_ppo", "full_soft_ppo"]
    assert "kept" in residual and residual["eval"]["basic_return"]["mean"] is not None
    assert "| customization | Residual PPO from the prior |" in out.with_suffix(".md").read_text()
