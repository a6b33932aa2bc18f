"""Where the shared test data lives: ../shared beside the checkout (as on CI), or HH_RLHF_FILE."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HH_FILE = Path(
    os.environ.get("HH_RLHF_FILE", REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz")
)
