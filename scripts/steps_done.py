"""Print the pretraining steps a checkpoint has done (0 where it does not exist yet): what the
resumable protocol scripts compare with their schedule.

    .venv/bin/python scripts/steps_done.py runs/pretrain_long/geobert_s_mim.safetensors
"""

from __future__ import annotations

import sys
from pathlib import Path

from geobert.models.checkpoint import read_card

if __name__ == "__main__":
    ckpt = Path(sys.argv[1])
    print(int(read_card(ckpt).training["steps_done"]) if ckpt.exists() else 0)
