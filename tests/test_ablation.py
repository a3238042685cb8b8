"""The Table 1 study: the rows' switches, the paired interval by hand, the generated section of
its document, and a tiny run end to end (cached RoIs, seeded and resumable)."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import deepacc_d2  # noqa: F401
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.studies import ablation, ablation_retinanet
from deepacc_d2.studies.ablation_report import markdown, summarize, write_generated
from deepacc_d2.studies.table1 import METRICS, METRICS_WITH_AP50, resolved_switches, table1_rows

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import BoxMode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml")


# Table 1 by hand: separate branches, L_AAM, siamese branch, L_GIA
TABLE_1 = {
    "a": (False, False, False, False),
    "b": (True, False, False, False),
    "c": (True, True, False, False),
    "d": (True, False, True, False),
    "e": (True, True, True, False),
    "f": (True, True, True, True),
}


def test_rows_are_table_1():
    rows = table1_rows()
    assert list(rows) == list("abcdef")
    assert {k: r.switches for k, r in rows.items()} == TABLE_1
    assert rows["a"].config == os.path.join(REPO, "configs", "table1", "a_faster_rcnn.yaml")
    assert rows["f"].name == "(f) DeepACC" and rows["b"].cpu_config == ""
    for row in rows.values():  # each config's own switches, through its _BASE_ chain
        cfg = setup_cfg(row.config, ["MODEL.DEVICE", "cpu"])
        d = cfg.MODEL.DEEPACC
        assert (d.SEPARATE_BRANCHES, d.AAM.ENABLED, d.SIAMESE.ENABLED, d.GIA.ENABLED) == (
            TABLE_1[row.letter]
        )


def test_cpu_configs_are_the_same_rows():
    rows = table1_rows()
    cpu = {k: os.path.relpath(r.cpu_config, REPO) for k, r in rows.items() if r.cpu_config}
    assert cpu == {
        "a": "configs/cpu/a_faster_rcnn_cpu.yaml",
        "c": "configs/cpu/c_aam_cpu.yaml",
        "d": "configs/cpu/d_siamese_cpu.yaml",
        "f": "configs/cpu/f_deepacc_cpu.yaml",
    }
    for letter in cpu:
        assert resolved_switches(rows[letter].cpu_config) == TABLE_1[letter]


def test_row_opts_make_any_config_that_row(load_tool):
    """The study's rows: the CIL detector's config (row (f)) with each row's switches."""
    cil = os.path.join(REPO, "configs", "cpu", "f_deepacc_cil_r18.yaml")
    assert resolved_switches(cil) == TABLE_1["f"]
    for row in table1_rows().values():
        d = setup_cfg(cil, row.opts()).MODEL.DEEPACC
        assert (d.SEPARATE_BRANCHES, d.AAM.ENABLED, d.SIAMESE.ENABLED, d.GIA.ENABLED) == (
            TABLE_1[row.letter]
        )
    assert table1_rows()["a"].opts()[:2] == ["MODEL.DEEPACC.SEPARATE_BRANCHES", "False"]
    assert ablation.row_name("r") == "RetinaNet (Table 2)"
    assert ablation.row_name("c") == "(c) sep + L_AAM"
    with pytest.raises(ValueError, match="Table 1 has abcdef"):
        ablation.run_table(cil, "none.pth", "unused", rows=("a", "g"))
    # the learning curves train the CPU rows by default, paths relative to the checkout
    assert load_tool("learning_curves").table1_runs() == [
        "a=configs/cpu/a_faster_rcnn_cpu.yaml",
        "c=configs/cpu/c_aam_cpu.yaml",
        "d=configs/cpu/d_siamese_cpu.yaml",
        "f=configs/cpu/f_deepacc_cpu.yaml",
    ]


def test_metric_columns():
    assert METRICS == ("mAP", "mAPmax", "Acc", "AER")
    assert METRICS_WITH_AP50 == ("mAP", "mAPmax", "COCO_AP50", "Acc", "AER")


def test_a_run_file_is_reused_only_with_its_setting(tmp_path, caplog):
    setting = {"config": "c.yaml", "iterations": 6, "opts": ["MODEL.DEVICE", "cpu"]}
    out = str(tmp_path)
    assert ablation._done(out, "a", 0, setting) is None  # no file: run it
    (tmp_path / "runs").mkdir()
    made = {"mAP": 12.5, "row": "a", "seed": 0, "setting": setting}
    (tmp_path / "runs" / "a_s0.json").write_text(json.dumps(made))
    assert ablation._done(out, "a", 0, setting) == made  # finished, same setting: reused
    assert ablation._done(out, "a", 1, setting) is None  # another seed's file is not there
    with caplog.at_level("INFO", logger="deepacc_d2.engine.runs"):
        assert ablation._done(out, "a", 0, dict(setting, iterations=4)) is None  # run again
    assert "a_s0.json was made with other settings (iterations: 6 there, 4 here)" in caplog.text


def test_paired_interval_by_hand():
    results = {}
    for seed, (a, f) in enumerate([(10.0, 11.0), (20.0, 22.0), (30.0, 33.0)]):
        for row, value in (("a", a), ("f", f)):
            results[row, seed] = {m: value for m in METRICS}
    summary = summarize(results, ("a", "f"), (0, 1, 2))
    assert summary["table"]["a"]["mAP"]["mean"] == 20.0
    assert summary["table"]["a"]["mAP"]["std"] == pytest.approx(10.0)  # n - 1
    paired = summary["paired_f_minus_a"]["mAP"]
    # differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.3027: 2 ± 4.3027 / sqrt(3)
    assert paired["diff"] == [1.0, 2.0, 3.0] and paired["mean"] == 2.0
    np.testing.assert_allclose(paired["ci95"], [2 - 2.48414, 2 + 2.48414], atol=1e-4)


def test_generated_section_keeps_the_hand_written_text(tmp_path):
    doc = tmp_path / "ablation.md"
    doc.write_text(
        "# Title\n\nbefore\n\n<!-- generated by tools/ablation.py: begin -->\nold\n"
        "<!-- generated by tools/ablation.py: end -->\n\nafter\n"
    )
    write_generated(str(doc), "new table\n")
    text = doc.read_text()
    assert "before" in text and "after" in text and "new table" in text and "old" not in text
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- generated"):
        write_generated(str(tmp_path / "plain.md"), "x")


@pytest.mark.slow
def test_tiny_table_runs_resumes_and_reports(tmp_path, monkeypatch):
    # a random CPU model as the "trained" detector, on 3 train and 2 val images of rods
    torch.manual_seed(0)
    small = ["INPUT.MIN_SIZE_TEST", "160", "INPUT.MAX_SIZE_TEST", "200"]
    small += ["MODEL.RPN.POST_NMS_TOPK_TEST", "30", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32"]
    weights = tmp_path / "model"
    DetectionCheckpointer(build_model(setup_cfg(CONFIG, small)), save_dir=str(tmp_path)).save(
        "model"
    )
    rng = np.random.default_rng(0)
    dicts = []
    for i in range(5):
        image = np.full((160, 200, 3), 230, np.uint8)
        annotations = []
        for k in range(4):
            x, y = 20 + 40 * k, 30 + int(rng.integers(0, 60))
            image[y : y + 40, x : x + 12] = 40
            annotations.append(
                {"bbox": [x, y, x + 12, y + 40], "bbox_mode": BoxMode.XYXY_ABS, "category_id": k}
            )
        path = str(tmp_path / f"rods{i}.png")
        Image.fromarray(image).save(path)
        dicts.append(
            {
                "file_name": path,
                "image_id": i,
                "height": 160,
                "width": 200,
                "annotations": annotations,
            }
        )
    for name, part in (("abl_train", dicts[:3]), ("abl_val", dicts[3:])):
        DatasetCatalog.register(name, lambda part=part: part)
        MetadataCatalog.get(name).set(thing_classes=list(deepacc_d2.CLASS_NAMES))
    opts = small + ["DATASETS.TRAIN", "('abl_train',)", "DATASETS.TEST", "('abl_val',)"]
    out = str(tmp_path / "out")
    rows = ("a", "f", "r")
    results = ablation.run_table(
        CONFIG, str(weights) + ".pth", out, rows, (0, 1), iterations=6, opts=opts
    )
    assert set(results) == {(r, s) for r in rows for s in (0, 1)}
    for r in results.values():
        assert all(np.isfinite(r[m]) or m == "Acc" for m in METRICS)
        assert r["setting"]["iterations"] == 6 and r["train_s"] > 0
    # a second call finds every run done and trains nothing
    monkeypatch.setattr(ablation, "train_head", lambda *a, **k: pytest.fail("trained again"))
    monkeypatch.setattr(ablation, "train_retinanet", lambda *a, **k: pytest.fail("again"))
    again = ablation.run_table(
        CONFIG, str(weights) + ".pth", out, rows, (0, 1), iterations=6, opts=opts
    )
    assert again == results
    monkeypatch.undo()
    changed = ablation.run_table(  # another setting: nothing reused
        CONFIG, str(weights) + ".pth", out, ("a",), (0,), iterations=4, opts=opts
    )
    assert changed["a", 0]["setting"]["iterations"] == 4
    with open(os.path.join(out, "runs", "f_s1.json")) as f:
        assert json.load(f)["seed"] == 1
    meta = {"command": "python tools/ablation.py", "minutes": 1, "machine": "m", "versions": "v"}
    text = markdown(summarize(results, rows, (0, 1)), results, rows, (0, 1), meta)
    assert "(f) DeepACC" in text and "Paired by seed, (f) − (a)" in text
    assert "Paired by seed, (f) − RetinaNet" in text and "| RetinaNet (Table 2) |" in text
    assert text.count("| (a) |") == 2 and text.count("| RetinaNet |") == 2


def test_retinanet_on_cached_levels_is_detectron2s_retinanet():
    """The study's RetinaNet, fed the levels its trunk computed, detects what the whole
    detectron2 model detects on the image; only its head trains."""
    small = ["INPUT.MIN_SIZE_TEST", "160", "INPUT.MAX_SIZE_TEST", "200"]
    opts = ablation_retinanet.retinanet_opts(setup_cfg(CONFIG, small))
    cfg = setup_cfg(CONFIG, small + opts + ["MODEL.RETINANET.SCORE_THRESH_TEST", "0.0"])
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES[0] == [6.4, 8.06, 10.16]  # 32 * 2^(i/3) * 160/800
    torch.manual_seed(0)
    real = build_model(cfg).eval()
    cached = ablation_retinanet.build_retinanet(cfg, 0).eval()  # the same initialisation
    image = torch.as_tensor(np.random.default_rng(0).integers(0, 255, (3, 160, 192)))
    inputs = [{"image": image.float(), "height": 160, "width": 192}]
    with torch.no_grad():
        theirs = real(inputs)[0]["instances"]
        cached.backbone.features = real.backbone(real.preprocess_image(inputs).tensor)
        ours = cached(inputs)[0]["instances"]
    assert len(ours) == len(theirs) > 0
    assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
    assert torch.equal(ours.scores, theirs.scores)
    assert torch.equal(ours.class_scores, theirs.class_scores)
    trainable = [n for n, p in cached.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("head.") for n in trainable)


def test_labels_are_detectron2s():
    """label_rois gives each RoI the label detectron2's StandardROIHeads gives it before
    sampling (checked with a sampler that keeps every labelled RoI)."""
    cfg = setup_cfg(CONFIG, ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "100000"])
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION = 1.0
    heads = build_model(cfg).roi_heads
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 200
    proposals = torch.cat([xy, xy + 10 + torch.rand(60, 2, generator=g) * 40], dim=1)
    gt = proposals[:5] + torch.rand(5, 4, generator=g) * 6
    gt[:, 2:] = torch.maximum(gt[:, 2:], gt[:, :2] + 5)
    gt_classes = torch.tensor([3, 0, 23, 7, 3])
    boxes = torch.cat([proposals, gt])
    labels, matched = ablation.label_rois(heads, boxes, gt, gt_classes)
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    with EventStorage(0):  # where detectron2 logs its sampling statistics
        (theirs,) = heads.label_and_sample_proposals(
            [
                Instances(
                    (300, 300), proposal_boxes=Boxes(proposals), objectness_logits=torch.zeros(60)
                )
            ],
            [Instances((300, 300), gt_boxes=Boxes(gt), gt_classes=gt_classes)],
        )
    ours = sorted(
        (tuple(b.tolist()), int(k), tuple(m.tolist()))
        for b, k, m in zip(boxes, labels, matched)
        if k >= 0
    )
    mine = sorted(
        (tuple(b.tolist()), int(k), tuple(m.tolist()))
        for b, k, m in zip(theirs.proposal_boxes.tensor, theirs.gt_classes, theirs.gt_boxes.tensor)
    )
    assert [(b, k) for b, k, _ in ours] == [(b, k) for b, k, _ in mine]
    assert [m for _, k, m in ours if k < 24] == [m for _, k, m in mine if k < 24]
    assert (labels == 24).any() and (labels < 24).any()
