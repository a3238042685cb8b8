#!/usr/bin/env python
"""The crops the second look's classifier names, by turn, for one count_stages run (a probe):
python tools/probe_turns.py <count_stages args>"""

import json
import os
import runpy
import sys

from deepacc_d2.modeling.second_look import SecondLook

TALLY = {"crops": 0, "turned": 0}
_crop_names = SecondLook._crop_names


def counted(self, gray, sizes, boxes, which, fg, turns=(0,)):
    TALLY["crops" if tuple(turns) == (0,) else "turned"] += len(boxes) * len(turns)
    return _crop_names(self, gray, sizes, boxes, which, fg, turns)


SecondLook._crop_names = counted
sys.argv = ["tools/count_stages.py"] + sys.argv[1:]
runpy.run_path("tools/count_stages.py", run_name="__main__")
out = sys.argv[sys.argv.index("--out") + 1]
with open(os.path.join(out, "turns_tally.json"), "w") as f:
    json.dump(TALLY, f)
print(TALLY)
