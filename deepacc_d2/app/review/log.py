"""
The case's ``review_log.jsonl``: one JSON object a line for each change a person made on the
review page (the cell, its new version, the action and what it changed), appended as it is
made, in the order it was made.
"""

import json
import os
import time
from typing import Dict, List

LOG_NAME = "review_log.jsonl"


def read_log(root: str) -> List[Dict]:
    """The case's ``review_log.jsonl`` entries in order; a line that is not JSON (a write a
    crash cut short) is left out."""
    try:
        with open(os.path.join(root, LOG_NAME)) as f:
            lines = f.readlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def append_log(root: str, entry: Dict):
    """``entry`` with the time it is written, at the end of the case's log, on disk on return."""
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **entry}
    with open(os.path.join(root, LOG_NAME), "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())
