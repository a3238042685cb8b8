import pytest

import deepacc_d2  # noqa: F401
from deepacc_d2.engine import epoch_schedule


def test_epoch_schedule_paper_recipe():
    # 1500 images, batch 1: 1500 iters/epoch; 24 epochs; steps after epochs 16 and 22
    assert epoch_schedule(24, (16, 22), 1500, 1) == (36000, (24000, 33000))
    # 101 images, batch 2: ceil(50.5) = 51 iters/epoch
    assert epoch_schedule(24, (16, 22), 101, 2) == (1224, (816, 1122))
    # a step at or past the last epoch is dropped
    assert epoch_schedule(10, (16, 22), 10, 1) == (100, ())
    with pytest.raises(ValueError):
        epoch_schedule(24, (16,), 0, 1)
