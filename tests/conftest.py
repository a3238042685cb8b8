import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cil24_root():
    """The real CIL images: $CIL24_ROOT, else ../shared/data/cil24 beside the repository."""
    return os.environ.get("CIL24_ROOT", os.path.join(REPO, "..", "shared", "data", "cil24"))


@pytest.fixture
def cil24():
    root = cil24_root()
    if not os.path.isdir(os.path.join(root, "Annotations")):
        pytest.skip(f"real CIL data not found at {root} (set CIL24_ROOT)")
    return root
