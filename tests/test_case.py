"""A case at the model's speed: the commands in worker processes write exactly what one
process does, read like detectron2's DefaultPredictor, lose only the image of a worker that
dies, and evaluation pictures reuse the metric pass."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import deepacc_d2  # noqa: F401
from deepacc_d2.app import case as case_module
from deepacc_d2.app import predict as predict_module
from deepacc_d2.app.case import CaseModel, case_workers, list_images
from deepacc_d2.app.cli import main
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.karyotype.case_files import karyotype_files
from deepacc_d2.app.model_zoo import DETECTOR, model_record
from deepacc_d2.app.predict import predict_files
from deepacc_d2.app.review.report_text import cell_report_lines
from deepacc_d2.app.review.store import CaseReview
from deepacc_d2.engine.evaluate import evaluate
from deepacc_d2.engine.predictor import for_cpu_inference, load_model

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.structures import BoxMode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "cpu", "f_deepacc_cpu.yaml")
SMALL = ["INPUT.MIN_SIZE_TEST", "120", "INPUT.MAX_SIZE_TEST", "160"]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A random model's weights (scores kept from 0), and a folder of 4 images + 1 broken."""
    root = tmp_path_factory.mktemp("case")
    torch.manual_seed(0)
    cfg = setup_cfg(CONFIG, SMALL)
    DetectionCheckpointer(build_model(cfg), save_dir=str(root)).save("model")
    images = root / "slides"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (120, 150 + 10 * i, 3), dtype=np.uint8)).save(
            images / f"cell{i}.png"
        )
    (images / "broken.png").write_bytes(b"not a png")
    opts = SMALL + [
        "TEST.KARYOTYPE.SCORE_THRESH",
        "0.02",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        "0.01",
    ]
    return setup_cfg(CONFIG, opts, str(root / "model.pth")), str(images)


def _files(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".png"):
            out[name] = np.asarray(Image.open(path))
        elif name.endswith(".json"):
            with open(path) as f:
                out[name] = json.load(f)
        else:
            with open(path) as f:
                out[name] = f.read()
    return out


def _same(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        if isinstance(a[name], np.ndarray):
            assert np.array_equal(a[name], b[name]), name
        else:
            assert a[name] == b[name], name


@pytest.mark.slow
def test_reading_is_detectron2s_default_predictor(case):
    cfg, folder = case
    ours = CaseModel(cfg, load_model(cfg))
    predictor = DefaultPredictor(cfg)
    for_cpu_inference(predictor.model)  # what load_model does to the weights
    seen = 0
    for path in list_images([folder]):
        image, instances, error = ours(path)
        if error is not None:
            assert path.endswith("broken.png") and "cannot read image" in error
            continue
        theirs = predictor(image)["instances"].to("cpu")
        assert len(instances) == len(theirs) > 0
        assert torch.equal(instances.pred_boxes.tensor, theirs.pred_boxes.tensor)
        assert torch.equal(instances.scores, theirs.scores)
        seen += 1
    assert seen == 4


def _run(command, cfg, folder, out, **kwargs):
    if command == "predict":
        return predict_files(cfg, [folder], out, **kwargs)
    return karyotype_files(cfg, [folder], out, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "karyotype"])
def test_workers_write_what_one_process_writes(case, tmp_path, command):
    cfg, folder = case
    outputs = {}
    threads = torch.get_num_threads()
    for workers in (1, 2):
        out = str(tmp_path / str(workers))
        timings = {}
        torch.set_num_threads(1)  # the workers' thread count: the same sums in the same order
        try:
            _run(command, cfg, folder, out, workers=workers, timings=timings)
        finally:
            torch.set_num_threads(threads)
        outputs[workers] = _files(out)
        assert timings["model"] > 0 and timings["pictures"] > 0 and timings["start-up"] > 0
        assert timings["read"] > 0 and timings["write"] > 0
    _same(outputs[1], outputs[2])
    pictures = [n for n in outputs[1] if n.endswith(".png")]
    assert len(pictures) == 4


@pytest.mark.slow
def test_a_worker_that_dies_loses_only_its_image(case, tmp_path, monkeypatch):
    cfg, folder = case
    parent, read = os.getpid(), case_module.read_metaphase

    def read_or_die(path):  # the forked workers inherit it
        if path.endswith("cell2.png") and os.getpid() != parent:
            os._exit(1)  # a crash in a decoder, or the kernel killing it for memory
        return read(path)

    warnings = []
    monkeypatch.setattr(case_module.logger, "warning", warnings.append)
    monkeypatch.setattr(case_module, "read_metaphase", read_or_die)
    summary = karyotype_files(cfg, [folder], str(tmp_path / "died"), workers=2)
    assert warnings == ["a worker process died; the case goes on in 1 worker(s)"]
    monkeypatch.setattr(case_module, "read_metaphase", read)
    plain = karyotype_files(cfg, [folder], str(tmp_path / "plain"), workers=2)
    died = os.path.join(folder, "cell2.png")
    assert "worker process running it died" in summary["failed"][died]
    assert sorted(summary["failed"]) == sorted([died, *plain["failed"]])
    assert summary["counts_per_cell"] == {
        f: n for f, n in plain["counts_per_cell"].items() if f != died
    }
    for i in (0, 1, 3):  # the others' files are all there and the same
        name = f"cell{i}_karyotype.json"
        assert _files(tmp_path / "died")[name] == _files(tmp_path / "plain")[name]


def test_case_workers(case):
    cfg, _ = case
    assert case_workers(cfg, images=10, workers=3) == 3
    assert case_workers(cfg, images=2, workers=3) == 2  # never more than the images
    assert case_workers(cfg, images=0) == 1
    assert case_workers(cfg, images=100) == min(torch.get_num_threads(), 100)
    gpu = cfg.clone()
    gpu.defrost()
    gpu.MODEL.DEVICE = "cuda"
    assert case_workers(gpu, images=10, workers=4) == 1  # no fork after CUDA: this process
    with pytest.raises(ValueError, match="workers=0"):
        case_workers(cfg, images=10, workers=0)


def test_pictures_none_writes_records_only(case, tmp_path):
    cfg, folder = case
    summary = karyotype_files(cfg, [folder], str(tmp_path), pictures="none")
    assert summary["cells_read"] == 4 and len(summary["failed"]) == 1
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".png")]
    with pytest.raises(ValueError, match="pictures='some'"):
        predict_files(cfg, [folder], str(tmp_path), pictures="some")


@pytest.mark.parametrize("save_every", [0.0, 1e9])
def test_a_case_stopped_partway_keeps_the_predictions_done(case, tmp_path, monkeypatch, save_every):
    cfg, folder = case
    monkeypatch.setattr(predict_module, "SAVE_EVERY_S", save_every)
    read, calls = case_module.read_metaphase, []

    def read_until_stopped(path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third image is read
        return read(path)

    monkeypatch.setattr(case_module, "read_metaphase", read_until_stopped)
    with pytest.raises(KeyboardInterrupt):
        predict_files(cfg, [folder], str(tmp_path), pictures="none", workers=1)
    with open(tmp_path / "predictions.json") as f:
        saved = json.load(f)
    # broken.png sorts first: one error, one image predicted, then the stop
    assert len(saved["errors"]) == 1 and list(saved["predictions"]) == [calls[1]]


def test_the_case_records_its_model_and_the_report_shows_it(case, tmp_path):
    cfg, folder = case
    model = model_record("cil-r18-crops")
    assert model["weights"] == "cil-r18-crops" and model["config_file"].endswith(
        os.path.join("configs", "cpu", "f_deepacc_cil_r18_crops.yaml")
    )
    assert model["sha256"]["cil_r18_deepacc.pth"] == DETECTOR[1] and len(model["sha256"]) == 3
    karyotype_files(cfg, [folder], str(tmp_path), pictures="none", model=model)
    with open(tmp_path / "case.json") as f:
        assert json.load(f)["model"] == model
    review = CaseReview(str(tmp_path))
    review.edit("cell0", {"version": 0, "action": "reviewed", "reviewed": True})
    with open(tmp_path / "case.json") as f:
        assert json.load(f)["model"] == model  # the review writes the case again, model kept
    digests = "; ".join(f"{name} {digest}" for name, digest in model["sha256"].items())
    assert cell_report_lines(review, "cell0")["sections"]["Model"][:2] == [
        f"Model: cil-r18-crops (config {model['config_file']})",
        f"Weights sha256: {digests}",
    ]


def test_evaluation_pictures_come_from_the_metric_pass(case, tmp_path, monkeypatch):
    cfg, folder = case
    dicts = [
        {
            "file_name": p,
            "image_id": i,
            "height": 120,
            "width": 150 + 10 * i,
            "annotations": [
                {"bbox": [10, 10, 30, 60], "bbox_mode": BoxMode.XYXY_ABS, "category_id": i}
            ],
        }
        for i, p in enumerate(sorted(os.path.join(folder, f"cell{i}.png") for i in range(3)))
    ]
    name = "case_eval_tiny"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(deepacc_d2.CLASS_NAMES))
    model = load_model(cfg)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    results = evaluate(cfg, model, name, str(tmp_path), visualize=2)
    assert "mAP" in results["karyotype"]
    assert len(calls) == 3  # one forward pass per image, pictures included
    drawn = sorted(n for n in os.listdir(tmp_path) if n.endswith("_pred.png"))
    assert drawn == ["cell0_pred.png", "cell1_pred.png"]


def test_any_error_of_a_file_is_named_and_the_case_goes_on(case, tmp_path, monkeypatch):
    cfg, folder = case
    read = case_module.read_metaphase

    def read_or_fail(path):  # not read_metaphase's own ValueError
        if path.endswith("cell1.png"):
            raise MemoryError("no room")
        return read(path)

    monkeypatch.setattr(case_module, "read_metaphase", read_or_fail)
    summary = karyotype_files(cfg, [folder], str(tmp_path), pictures="none", workers=2)
    failed = os.path.join(folder, "cell1.png")
    assert summary["failed"][failed] == f"{failed}: MemoryError: no room"
    assert summary["cells_read"] == 3 and len(summary["failed"]) == 2  # and broken.png


def test_workers_must_be_a_positive_number(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["karyotype", "--weights", "x.pth", "--workers", "0", "folder"])
    assert stop.value.code == 2 and "'0' is not a whole number of at least 1" in (
        capsys.readouterr().err
    )
