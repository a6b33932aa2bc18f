"""Where the shared test data lives: ../shared beside the checkout (as on CI), or HH_RLHF_FILE."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_NAME = Path("data") / "hh-rlhf-harmless-base-test.jsonl.gz"


def _hh_file() -> Path:
    if os.environ.get("HH_RLHF_FILE"):
        return Path(os.environ["HH_RLHF_FILE"])
    beside = REPO.parent / "shared" / _NAME
    # The developers' machines keep shared/ at /work/shared; CI puts a copy beside the clone.
    return beside if beside.exists() else Path("/work/shared") / _NAME


HH_FILE = _hh_file()
