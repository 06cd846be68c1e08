"""scripts/profile_batched_round.py on the CPU with the tiny preset: rounds, timings, the kernel table."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_profile_script_prints_rounds_and_the_wall_vs_kernel_split():
    command = [sys.executable, "scripts/profile_batched_round.py", "--preset", "tiny", "--device", "cpu",
               "--sessions", "3", "--rounds", "2", "--warm-rounds", "1"]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=True).stdout
    rounds = [line for line in out.splitlines() if line.startswith("round ")]
    assert len(rounds) == 2 and all("'prefill'" in line and "cache lengths" in line for line in rounds)
    assert "2 rounds: wall" in out and "summed device kernels 0 ms" in out  # no device kernels on the CPU
    assert "aten::" in out  # the operator table
