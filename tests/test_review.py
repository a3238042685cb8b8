"""
The review page's API and store: a person's changes give the calls worked out by hand, are
on disk at once and logged, survive a restart, conflict instead of overwriting, and export as a
COCO dataset that detectron2 loads and trains on; every bad request is a 4xx that writes nothing.
"""

import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import HEIGHT, WIDTH, normal
from PIL import Image

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import add_application_config
from deepacc_d2.app.karyotype.cell import KaryotypeRules, cell_record, detections_from_record
from deepacc_d2.app.review.log import LOG_NAME
from deepacc_d2.app.review.server import MAX_BODY_BYTES, create_app
from deepacc_d2.app.review.store import CaseReview
from deepacc_d2.classes import CLASS_NAMES, NUM_CLASSES
from deepacc_d2.data.datasets import register_coco_folders

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def case_dir(review_case):
    return review_case


@pytest.fixture
def client(case_dir):
    return create_app(str(case_dir)).test_client()


def snapshot(folder):
    """Every file under the folder, with its bytes."""
    out = {}
    for base, _, files in os.walk(folder):
        for f in files:
            with open(os.path.join(base, f), "rb") as fh:
                out[os.path.relpath(os.path.join(base, f), folder)] = fh.read()
    return out


def edit(client, cell, **change):
    return client.post(f"/api/cells/{cell}/edit", json=change)


def test_record_round_trip():
    names = ["1", "X", "7"]
    class_scores = np.zeros((3, NUM_CLASSES))
    class_scores[0, [0, 1, 2, 5]] = [0.7, 0.2, 0.05, 0.01]  # the 4th is not kept
    class_scores[1, [22, 6]] = [0.6, 0.3]
    class_scores[2, [6, 7, 22]] = [0.5, 0.4, 0.05]
    detections = {
        "boxes": np.array([[0, 0, 5, 9], [10, 2, 20, 30], [3, 3, 9, 9.5]]),
        "classes": np.array([CLASS_NAMES.index(c) for c in names]),
        "class_scores": class_scores,
        "margins": np.array([np.inf, 1.5, 0.25]),
    }
    detections["scores"] = class_scores[np.arange(3), detections["classes"]]
    cfg = get_cfg()
    add_application_config(cfg)
    rules = KaryotypeRules.from_config(cfg)
    record = cell_record(detections, rules)
    back = detections_from_record(record["detections"])
    np.testing.assert_allclose(back["boxes"], detections["boxes"])
    assert back["classes"].tolist() == detections["classes"].tolist()
    np.testing.assert_allclose(back["scores"], [0.7, 0.6, 0.5])
    np.testing.assert_allclose(back["margins"], [np.inf, 1.5, 0.25])
    assert back["class_scores"][0, 5] == 0  # outside the top 3
    assert cell_record(back, rules) == record  # the same record made again


def test_case_and_cell_views(client):
    case = client.get("/api/case").get_json()
    calls = {c["id"]: c["karyotype"] for c in case["cells"]}
    assert calls == {"cellA": "46,XY", "cellB": "45,XY,-21"}
    assert case["summary"]["cells_read"] == 2 and case["summary"]["reviewed"] == []
    cell = client.get("/api/cells/cellB").get_json()
    assert cell["version"] == 0 and cell["total"] == 45 and not cell["reviewed"]
    assert cell["image"] == {
        "path": cell["image"]["path"],
        "height": HEIGHT,
        "width": WIDTH,
    } and os.path.isabs(cell["image"]["path"])
    image = client.get("/api/cells/cellB/image.png")
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert client.get("/api/cells/cellB/karyogram.png").status_code == 200
    assert client.get("/").status_code == 200 and b"review.js" in client.get("/").data
    assert client.get("/static/review.js").status_code == 200


def test_changes_give_the_hand_worked_calls_and_are_on_disk(client, case_dir):
    picture_before = (case_dir / "cellA_karyogram.png").read_bytes()
    r = edit(client, "cellA", version=0, action="class", index=0, **{"class": "2"})
    assert r.status_code == 200, r.get_json()
    cell = r.get_json()
    # one of the two 1s is now a 2: monosomy 1, trisomy 2 in 46 chromosomes
    assert cell["version"] == 1 and cell["karyotype"] == "46,XY,-1,+2"
    assert cell["counts"]["1"] == 1 and cell["counts"]["2"] == 3
    assert cell["detections"][0]["source"] == "person" and cell["detections"][0]["score"] == 1.0
    assert {f["flag"] for f in cell["flags"]} >= {"class_count"}
    # on disk at once: the record, its picture, the case summary and the log
    on_disk = json.loads((case_dir / "cellA_karyotype.json").read_text())
    assert cell.pop("inverse") == {"action": "class", "index": 0, "class": "1"}  # the undo
    assert on_disk == cell
    assert (case_dir / "cellA_karyogram.png").read_bytes() != picture_before
    case = json.loads((case_dir / "case.json").read_text())
    assert case["counts_per_cell"][cell["file"]] == 46
    log = [json.loads(line) for line in (case_dir / LOG_NAME).read_text().splitlines()]
    assert [(e["cell"], e["action"], e["from"], e["to"]) for e in log] == [
        ("cellA", "class", "1", "2")
    ]

    r = edit(client, "cellA", version=1, action="delete", index=45)  # the Y
    assert r.get_json()["karyotype"] == "45,X,-1,+2"  # a lone X: sex from counts alone
    r = edit(
        client, "cellB", version=0, action="add", bbox_xyxy=[400, 210, 415, 250], **{"class": "21"}
    )
    assert r.status_code == 200 and r.get_json()["karyotype"] == "46,XY"
    assert r.get_json()["detections"][-1]["bbox_xyxy"] == [400, 210, 415, 250]
    r = edit(client, "cellB", version=1, action="reviewed", reviewed=True)
    assert r.get_json()["reviewed"] and r.get_json()["version"] == 2
    summary = client.get("/api/case").get_json()["summary"]
    assert [os.path.basename(f) for f in summary["reviewed"]] == ["cellB.png"]
    assert all("cellB" not in f for f in summary["review"])  # reviewed: off the to-do list
    assert len((case_dir / LOG_NAME).read_text().splitlines()) == 4

    # a restart reads what was written
    again = CaseReview(str(case_dir))
    assert again.cell("cellA") == client.get("/api/cells/cellA").get_json()
    assert again.cell("cellB")["karyotype"] == "46,XY" and again.cell("cellB")["reviewed"]


def test_a_change_on_an_old_version_is_refused(client, case_dir):
    assert edit(client, "cellA", version=0, action="delete", index=3).status_code == 200
    before = snapshot(case_dir)
    r = edit(client, "cellA", version=0, action="delete", index=4)  # a second tab, behind
    assert r.status_code == 409 and "version 1" in r.get_json()["error"]
    assert snapshot(case_dir) == before


@pytest.mark.parametrize(
    "cell, change, status, says",
    [
        ("cellZ", {"version": 0, "action": "delete", "index": 0}, 404, "no cell"),
        ("cellA", {"version": 0, "action": "add", "class": "3"}, 400, "bbox_xyxy"),
        (
            "cellA",
            {"version": 0, "action": "add", "class": "3", "bbox_xyxy": [1, 2, 3]},
            400,
            "four",
        ),
        (
            "cellA",
            {"version": 0, "action": "add", "class": "3", "bbox_xyxy": ["a", 1, 2, 3]},
            400,
            "four",
        ),
        (
            "cellA",
            {"version": 0, "action": "add", "class": "3", "bbox_xyxy": [50, 50, 40, 90]},
            400,
            "x2 > x1",
        ),
        (
            "cellA",
            {"version": 0, "action": "add", "class": "3", "bbox_xyxy": [500, 10, 530, 40]},
            400,
            "outside",
        ),
        (
            "cellA",
            {"version": 0, "action": "add", "class": "3", "bbox_xyxy": [-1, 10, 30, 40]},
            400,
            "outside",
        ),
        (
            "cellA",
            {"version": 0, "action": "add", "class": "23", "bbox_xyxy": [5, 5, 9, 9]},
            400,
            "class",
        ),
        ("cellA", {"version": 0, "action": "class", "index": 0, "class": "Z"}, 400, "class"),
        ("cellA", {"version": 0, "action": "class", "index": 0, "class": 3}, 400, "class"),
        ("cellA", {"version": 0, "action": "class", "index": 46, "class": "3"}, 400, "index"),
        ("cellA", {"version": 0, "action": "delete", "index": True}, 400, "index"),
        ("cellA", {"version": 0, "action": "rename"}, 400, "action"),
        ("cellA", {"action": "delete", "index": 0}, 400, "version"),
        ("cellA", {"version": 0, "action": "reviewed", "reviewed": "yes"}, 400, "reviewed"),
        ("cellA", [1, 2], 400, "object"),
    ],
)
def test_bad_changes_are_refused_and_write_nothing(client, case_dir, cell, change, status, says):
    before = snapshot(case_dir)
    r = client.post(f"/api/cells/{cell}/edit", json=change)
    assert r.status_code == status and says in r.get_json()["error"], r.get_json()
    assert snapshot(case_dir) == before


def test_bad_requests_outside_changes(client, case_dir):
    before = snapshot(case_dir)
    r = client.post("/api/cells/cellA/edit", data="{not json", content_type="application/json")
    assert r.status_code == 400 and "JSON" in r.get_json()["error"]
    big = {"version": 0, "action": "delete", "index": 0, "pad": "x" * MAX_BODY_BYTES}
    r = client.post("/api/cells/cellA/edit", json=big)
    assert r.status_code == 413 and r.get_json()["error"]
    # paths that try to leave the case folder or the page's folder
    for path in (
        "/static/../store.py",
        "/static/%2e%2e/store.py",
        "/static/..%2fstore.py",
        "/api/cells/..%2Fcase/image.png",
        "/api/cells/../case.json",
        "/case.json",
        "/api/cells/cellA_karyotype.json",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert b"deepacc_d2" not in r.data and b'"rules"' not in r.data
    assert client.delete("/api/cells/cellA").status_code == 405
    assert snapshot(case_dir) == before


def test_export_coco_is_a_dataset_with_the_corrected_labels(client, case_dir, tmp_path):
    r = client.get("/api/export/coco")
    assert r.status_code == 400 and "no cell is marked reviewed" in r.get_json()["error"]
    edit(
        client, "cellB", version=0, action="add", bbox_xyxy=[400, 210, 415, 250], **{"class": "21"}
    )
    edit(client, "cellB", version=1, action="class", index=0, **{"class": "X"})
    edit(client, "cellB", version=2, action="reviewed", reviewed=True)
    r = client.get("/api/export/coco")
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    folder = tmp_path / "datasets" / "lab_reviewed" / "annotations"
    folder.mkdir(parents=True)
    (folder / "train.json").write_bytes(r.data)
    assert register_coco_folders(str(tmp_path / "datasets")) == ["lab_reviewed_train"]
    (d,) = DatasetCatalog.get("lab_reviewed_train")
    assert d["file_name"] == str(case_dir / "images" / "cellB.png")
    assert (d["height"], d["width"]) == (HEIGHT, WIDTH)
    names = [CLASS_NAMES[a["category_id"]] for a in d["annotations"]]
    expected = normal()
    expected[0] = "X"  # the person's rename of chromosome 0
    assert sorted(names) == sorted(expected)  # 45 + the added 21
    added = d["annotations"][-1]
    assert CLASS_NAMES[added["category_id"]] == "21"
    np.testing.assert_allclose(added["bbox"], [400, 210, 415, 250])


def test_cli_export_and_bad_folders(case_dir, tmp_path, capsys):
    from deepacc_d2.app.cli import main

    with pytest.raises(SystemExit, match="no cell is marked reviewed"):
        main(["review", str(case_dir), "--export", "coco", str(tmp_path / "out.json")])
    CaseReview(str(case_dir)).edit("cellA", {"version": 0, "action": "reviewed", "reviewed": True})
    assert main(["review", str(case_dir), "--export", "coco", str(tmp_path / "out.json")]) == 0
    coco = json.loads((tmp_path / "out.json").read_text())
    assert len(coco["images"]) == 1 and len(coco["annotations"]) == 46
    assert [c["name"] for c in coco["categories"]] == list(CLASS_NAMES)
    with pytest.raises(SystemExit, match="the one format is coco"):
        main(["review", str(case_dir), "--export", "voc", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="not an output folder of deepacc karyotype"):
        main(["review", str(tmp_path / "empty"), "--export", "coco", str(tmp_path / "x")])
    # one unreadable record is named, the rest of the case stays reviewable
    (case_dir / "broken_karyotype.json").write_text("{")
    review = CaseReview(str(case_dir))
    assert set(review.cells) == {"cellA", "cellB"}
    assert any("broken_karyotype.json" in msg for msg in review.failed.values())


@pytest.mark.slow
def test_train_net_fine_tunes_on_an_export(client, tmp_path):
    edit(
        client, "cellB", version=0, action="add", bbox_xyxy=[400, 210, 415, 250], **{"class": "21"}
    )
    edit(client, "cellB", version=1, action="reviewed", reviewed=True)
    folder = tmp_path / "datasets" / "lab_reviewed" / "annotations"
    folder.mkdir(parents=True)
    (folder / "train.json").write_bytes(client.get("/api/export/coco").data)
    out = tmp_path / "train"
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "datasets"))
    proc = subprocess.run(
        [sys.executable, "train_net.py", "--config-file", "configs/cpu/f_deepacc_cpu.yaml"]
        + ["DATASETS.TRAIN", "('lab_reviewed_train',)", "DATASETS.TEST", "()"]
        + ["INPUT.MIN_SIZE_TRAIN", "(260,)", "INPUT.MAX_SIZE_TRAIN", "520"]
        + ["SOLVER.MAX_ITER", "4", "SOLVER.WARMUP_ITERS", "1", "OUTPUT_DIR", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "lab_reviewed_train" in proc.stdout + proc.stderr
    with open(out / "metrics.json") as f:
        losses = [json.loads(line)["total_loss"] for line in f if '"total_loss"' in line]
    assert losses and all(np.isfinite(losses))
    assert (out / "model_final.pth").is_file()


def test_two_servers_on_one_case_see_each_other(case_dir):
    first, second = create_app(str(case_dir)).test_client(), create_app(str(case_dir)).test_client()
    assert edit(first, "cellA", version=0, action="delete", index=0).status_code == 200
    r = edit(second, "cellA", version=0, action="delete", index=1)  # made before it saw that
    assert r.status_code == 409
    assert second.get("/api/cells/cellA").get_json()["version"] == 1  # reads the disk
    assert edit(second, "cellA", version=1, action="delete", index=1).status_code == 200
    assert first.get("/api/case").get_json()["summary"]["counts_per_cell"]
    assert CaseReview(str(case_dir)).cell("cellA")["total"] == 44


def test_more_bad_requests(client, case_dir):
    before = snapshot(case_dir)
    huge = {"version": 0, "action": "add", "class": "3", "bbox_xyxy": [10**400, 1, 2, 3]}
    assert edit(client, "cellA", **huge).status_code == 400
    deep = "[" * 30000 + "]" * 30000
    r = client.post("/api/cells/cellA/edit", data=deep, content_type="application/json")
    assert r.status_code == 400
    # a page elsewhere cannot reach the local server under a name of its own
    assert client.get("/api/case", headers={"Host": "evil.example:8000"}).status_code == 400
    assert snapshot(case_dir) == before


def test_a_moved_image_still_takes_corrections(client, case_dir):
    os.rename(case_dir / "images" / "cellB.png", case_dir / "images" / "moved.png")
    r = edit(
        client, "cellB", version=0, action="add", bbox_xyxy=[400, 210, 415, 250], **{"class": "21"}
    )
    assert r.status_code == 200 and r.get_json()["karyotype"] == "46,XY"


def test_reads_during_edits_always_find_every_cell(case_dir):
    # pages reading the case, its pictures and its cells while other pages change the cells:
    # every cell is found on every read, every change is saved or refused as out of date,
    # and the versions and the log agree afterwards
    app = create_app(str(case_dir))
    cells = ("cellA", "cellB")
    editing = threading.Event()
    editing.set()
    failures, saved, counting = [], {cid: 0 for cid in cells}, threading.Lock()

    def read(path):
        client = app.test_client()
        while editing.is_set():
            r = client.get(path)
            if r.status_code != 200:
                failures.append((path, r.status_code, r.get_data(as_text=True)[:200]))

    def change(cid, names):
        client = app.test_client()
        for name in names:
            version = client.get(f"/api/cells/{cid}").get_json()["version"]
            r = edit(client, cid, version=version, action="class", index=0, **{"class": name})
            if r.status_code == 200:
                with counting:
                    saved[cid] += 1
            elif r.status_code != 409:
                failures.append((cid, r.status_code, r.get_json()))

    readers = [threading.Thread(target=read, args=("/api/case",)) for _ in range(2)] + [
        threading.Thread(target=read, args=(f"/api/cells/{cid}/{picture}.png",))
        for cid in cells
        for picture in ("image", "karyogram")
    ]
    editors = [
        threading.Thread(target=change, args=(cid, names))
        for cid in cells
        for names in (["2", "3"], ["X", "1"])
    ]
    for t in readers + editors:
        t.start()
    for t in editors:
        t.join()
    editing.clear()
    for t in readers:
        t.join()
    assert failures == []
    log = [json.loads(line) for line in (case_dir / LOG_NAME).read_text().splitlines()]
    again = CaseReview(str(case_dir))
    for cid in cells:
        assert saved[cid] >= 1
        assert again.cell(cid)["version"] == saved[cid]
        assert [e["version"] for e in log if e["cell"] == cid] == list(range(1, saved[cid] + 1))


def test_a_class_put_back_is_the_models_answer_again(client, case_dir):
    model = client.get("/api/cells/cellA").get_json()
    first = model["detections"][0]
    assert first["source"] == "model" and first["class"] == "1"
    r = edit(client, "cellA", version=0, action="class", index=0, **{"class": "2"})
    named = r.get_json()["detections"][0]
    assert named["source"] == "person" and named["score"] == 1.0
    # named back by hand: the model's detection again, its score and the cell's flags with it
    r = edit(client, "cellA", version=1, action="class", index=0, **{"class": "1"})
    back = r.get_json()
    assert back["detections"] == model["detections"] and back["flags"] == model["flags"]
    assert back["karyotype"] == "46,XY" and back["version"] == 2
    # renamed twice, then back to the model's answer in one change
    edit(client, "cellA", version=2, action="class", index=0, **{"class": "2"})
    edit(client, "cellA", version=3, action="class", index=0, **{"class": "7"})
    r = edit(client, "cellA", version=4, action="model", index=0)
    assert r.status_code == 200 and r.get_json()["detections"] == model["detections"]
    log = [json.loads(line) for line in (case_dir / LOG_NAME).read_text().splitlines()]
    assert (log[-1]["action"], log[-1]["from"], log[-1]["to"]) == ("model", "7", "1")
    # a chromosome a person added has no model's answer to go back to
    box = {"bbox_xyxy": [400, 210, 415, 250], "class": "21"}
    edit(client, "cellA", version=5, action="add", **box)
    before = snapshot(case_dir)
    r = edit(client, "cellA", version=6, action="model", index=46)
    assert r.status_code == 400 and "added by a person" in r.get_json()["error"]
    assert snapshot(case_dir) == before
    r = edit(client, "cellA", version=6, action="class", index=46, **{"class": "22"})
    assert r.get_json()["detections"][46]["source"] == "person"
    # the model's answer survives a restart
    edit(client, "cellA", version=7, action="class", index=3, **{"class": "Y"})
    assert CaseReview(str(case_dir)).cell("cellA")["detections"][3]["model"]["class"] == "2"


def test_a_change_takes_off_the_reviewed_mark(client, case_dir):
    changes = [
        {"action": "class", "index": 0, "class": "2"},
        {"action": "model", "index": 0},
        {"action": "delete", "index": 0},
        {"action": "add", "bbox_xyxy": [400, 210, 415, 250], "class": "21"},
    ]
    version = 0
    for change in changes:
        r = edit(client, "cellB", version=version, action="reviewed", reviewed=True)
        assert r.get_json()["reviewed"]
        r = edit(client, "cellB", version=version + 1, **change)
        assert r.status_code == 200 and not r.get_json()["reviewed"], change
        version += 2
        summary = client.get("/api/case").get_json()["summary"]
        assert summary["reviewed"] == [] and any("cellB" in f for f in summary["review"])
    log = [json.loads(line) for line in (case_dir / LOG_NAME).read_text().splitlines()]
    assert [e["reviewed"] for e in log] == [True, False] * len(changes)


def test_each_change_is_undone_by_its_inverse(client, case_dir):
    """Each change, its inverse (as the page's undo sends it) and the change again (redo):
    the chromosomes after the inverse are those before, in their order, the model's answers
    kept; the call follows each step; every step a version and a line of the log."""
    changes = [
        # (change, the call after it)
        ({"action": "class", "index": 44, "class": "X"}, "45,XX,-21"),
        ({"action": "model", "index": 44}, "45,XY,-21"),
        ({"action": "swap", "index": 0, "other": 44}, None),  # a 1 and the Y: same counts
        ({"action": "delete", "index": 0}, "44,XY,-1,-21"),
        ({"action": "add", "bbox_xyxy": [400, 210, 415, 250], "class": "21"}, "46,XY"),
        ({"action": "box", "index": 3, "bbox_xyxy": [128, 4, 142, 38]}, "45,XY,-21"),
        (
            {"action": "split", "index": 40, "boxes": [[10, 155, 22, 170], [10, 170, 22, 185]]},
            "46,XY",
        ),
        ({"action": "reviewed", "reviewed": True}, "45,XY,-21"),
    ]
    version = 0
    for change, call in changes:
        before = client.get("/api/cells/cellB").get_json()
        r = edit(client, "cellB", version=version, **change)
        assert r.status_code == 200, (change, r.get_json())
        after = r.get_json()
        assert call is None or after["karyotype"] == call, change
        undo = after.pop("inverse")
        r = edit(client, "cellB", version=version + 1, **undo)
        assert r.status_code == 200, (undo, r.get_json())
        undone = r.get_json()
        assert undone["detections"] == before["detections"], change
        assert undone["karyotype"] == before["karyotype"] and undone["flags"] == before["flags"]
        redo = edit(client, "cellB", version=version + 2, **change).get_json()
        assert redo["detections"] == after["detections"], change
        undo = edit(client, "cellB", version=version + 3, **redo["inverse"]).get_json()
        assert undo["detections"] == before["detections"], change
        version += 4
    assert undo["version"] == version == 4 * len(changes)
    swapped = [e for e in map(json.loads, (case_dir / LOG_NAME).read_text().splitlines())][8]
    assert (swapped["action"], swapped["from"], swapped["to"]) == ("swap", "1", "Y")
    # the swap renames both in one version; the split's second part is a person's 21
    r = edit(client, "cellB", version=version, action="swap", index=0, other=44).get_json()
    assert [r["detections"][k]["class"] for k in (0, 44)] == ["Y", "1"]
    assert r["version"] == version + 1
    r = edit(client, "cellB", version=version + 1, **changes[6][0]).get_json()
    assert r["detections"][-1] == {
        **r["detections"][-1],
        "class": "21",
        "source": "person",
        "bbox_xyxy": [10.0, 170.0, 22.0, 185.0],
    }
    assert r["detections"][40]["bbox_xyxy"] == [10.0, 155.0, 22.0, 170.0]


def test_only_a_deleted_chromosome_is_restored(client, case_dir):
    first = client.get("/api/cells/cellA").get_json()["detections"][0]
    forged = {**first, "class": "7"}
    before = snapshot(case_dir)
    for detection in (first, forged, None, "1"):  # nothing deleted yet; then not this one
        r = edit(client, "cellA", version=0, action="restore", index=0, detection=detection)
        assert r.status_code == 400 and "deleted" in r.get_json()["error"]
    assert snapshot(case_dir) == before
    edit(client, "cellA", version=0, action="delete", index=0)
    r = edit(client, "cellB", version=0, action="restore", index=0, detection=first)
    assert r.status_code == 400  # deleted from another cell
    r = edit(client, "cellA", version=1, action="restore", index=0, detection=forged)
    assert r.status_code == 400
    r = edit(client, "cellA", version=1, action="restore", index=46, detection=first)
    assert r.status_code == 400 and "index" in r.get_json()["error"]
    r = edit(client, "cellA", version=1, action="restore", index=0, detection=first)
    assert r.status_code == 200 and r.get_json()["detections"][0] == first
    for bad in (
        {"action": "swap", "index": 3, "other": 3},
        {"action": "swap", "index": 3},
        {"action": "box", "index": 3, "bbox_xyxy": [0, 0, 600, 20]},
        {"action": "split", "index": 3, "boxes": [[0, 0, 10, 10]]},
        {"action": "merge", "index": 3, "other": 3},
    ):
        r = edit(client, "cellA", version=2, **bad)
        assert r.status_code == 400, bad


def test_the_karyogram_layout_holds_each_chromosome_in_its_slot(client, case_dir):
    record = client.get("/api/cells/cellB").get_json()
    layout = client.get("/api/cells/cellB/karyogram.json").get_json()
    picture = Image.open(io.BytesIO(client.get("/api/cells/cellB/karyogram.png").data))
    assert (layout["width"], layout["height"]) == picture.size
    assert layout["version"] == 0 and len(layout["chromosomes"]) == 45
    for (x0, y0, x1, y1), d in zip(layout["chromosomes"], record["detections"]):
        sx0, sy0, sx1, sy1 = layout["slots"][d["class"]]
        assert sx0 <= x0 < x1 <= sx1 and sy0 <= y0 < y1 <= sy1
    # the 21's slot holds one chromosome; after a rename the layout follows
    r = edit(client, "cellB", version=0, action="class", index=0, **{"class": "21"})
    layout = client.get("/api/cells/cellB/karyogram.json").get_json()
    assert layout["version"] == 1
    sx0, _, sx1, _ = layout["slots"]["21"]
    assert sx0 <= layout["chromosomes"][0][0] < sx1 and r.status_code == 200
    assert client.get("/api/cells/nope/karyogram.json").status_code == 404
