"""Where the test data lives: in the repository (tests/data/), or HH_RLHF_FILE when set.

tests/data/hh-rlhf-harmless-base-test.jsonl.gz is the harmless-base test split of Anthropic's
HH-RLHF (MIT licence, tests/data/hh-rlhf-LICENSE), kept here so the suite needs nothing beside
the checkout.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HH_FILE = Path(
    os.environ.get("HH_RLHF_FILE") or REPO / "tests" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
)
