"""
The ``deepacc`` command.

    deepacc synth   --out DIR --num-images N --seed S ...   generate synthetic metaphases
    deepacc eval    --weights W [--config-file C] [--dataset D] [--output DIR] [--visualize N]
    deepacc predict --weights W [--config-file C] --output DIR IMAGE_OR_FOLDER ... [--opts K V]
    deepacc export  --weights W [--config-file C] --output model.ts|model.onnx [--sample IMAGE]
    deepacc karyotype --weights W [--config-file C] --output DIR IMAGE_OR_FOLDER ...
                    per cell a karyogram + karyotype record, and the case summary
    (predict: --pictures overlay|none; karyotype: --pictures all|overlay|none; --workers N)
    deepacc review  OUTPUT_DIR_OF_KARYOTYPE [--host H] [--port P] [--export coco OUT.json]
                    [--report OUT_DIR]
                    the review page: correct a case's cells in the browser; export them;
                    write the reports to sign (PDF and PNG, the case's and each cell's)

W is a model of MODEL_ZOO.md by name (its config is known), or a checkpoint or (predict,
karyotype) a model exported by ``deepacc export`` (.ts, .onnx) with its --config-file.

Config overrides go after ``--opts`` (``--opts MODEL.DEVICE cpu TEST.DETECTIONS_PER_IMAGE 80``).

Training is ``python train_net.py --config-file C`` (detectron2's own launcher).
"""

import argparse
import json
import logging
import sys

import numpy as np

from detectron2.utils.logger import setup_logger

from ..data.images import read_metaphase
from ..data.synth.cli import main as synth_main
from ..data.synth.render import SynthConfig
from ..data.synth.writer import generate_image
from ..engine.evaluate import evaluate
from ..engine.files import write_atomic
from ..engine.predictor import load_model, model_input
from .config import setup_cfg
from .export import export_model
from .karyotype.case_files import karyotype_files, summary_text
from .model_zoo import model_record, resolve_model
from .predict import predict_files
from .review.report import write_reports
from .review.server import serve
from .review.store import CaseReview, ReviewError


def _model_args(p):
    p.add_argument(
        "--weights",
        required=True,
        help="a model of MODEL_ZOO.md by name (e.g. cil-r18-crops), a checkpoint (.pth) or, for "
        "predict and karyotype, an exported model (.ts, .onnx)",
    )
    p.add_argument("--config-file", help="the model's YAML (default: a named model's own)")
    p.add_argument(
        "--opts",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="config overrides, e.g. --opts MODEL.DEVICE cpu",
    )


def _case_args(p, pictures, help: str):
    """--pictures (``pictures``: its choices, the first the default) and --workers."""
    p.add_argument("--pictures", choices=pictures, default=pictures[0], help=help)
    p.add_argument(
        "--workers",
        type=_positive,
        help="processes of one thread each sharing the images (default: one per thread the "
        "model would use, at most one per image; 1: this process, with the model's threads)",
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _cfg(args):
    """The run's config from --weights (a model name or a checkpoint), --config-file, --opts."""

    try:
        config_file, weights, model_opts = resolve_model(args.weights, args.config_file)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"deepacc: error: {e}") from None
    return setup_cfg(config_file, model_opts + list(args.opts), weights)


def _eval(args):

    cfg = _cfg(args)
    return evaluate(
        cfg,
        load_model(cfg),
        args.dataset or cfg.DATASETS.TEST[0],
        args.output,
        args.visualize,
        args.score_thresh,
    )


def _predict(args):

    cfg = _cfg(args)
    results, errors = predict_files(
        cfg, args.inputs, args.output, args.score_thresh, args.pictures, args.workers
    )
    print(f"{len(results)} image(s) predicted into {args.output}; {len(errors)} skipped")
    for msg in errors.values():
        print("  error:", msg, file=sys.stderr)
    return 1 if errors else 0


def _export(args):

    cfg = _cfg(args)
    if args.sample:
        image = read_metaphase(args.sample)
    else:  # one synthetic metaphase as the tracing sample
        gray = generate_image(0, 0, 0, SynthConfig(image_size=(600, 800))).image
        image = np.repeat(gray[:, :, None], 3, axis=2)
    sample = model_input(image, cfg.INPUT)["image"]
    info = export_model(load_model(cfg), sample, args.output, cfg)
    print(f"wrote {args.output} (outputs {info['outputs']}) and {args.output}.json")
    return 0


def _karyotype(args):

    cfg = _cfg(args)
    model = model_record(args.weights, args.config_file)
    summary = karyotype_files(
        cfg, args.inputs, args.output, args.pictures, args.workers, model=model
    )
    print(summary_text(summary), end="")
    print(
        f"written to {args.output} (case.json, case.txt, <cell>_karyogram.png, "
        f"<cell>_karyotype.json)"
    )
    return 1 if summary["failed"] else 0


def _review(args):
    try:
        if not (args.export or args.report):
            serve(args.case_dir, args.host, args.port)
            return 0
        fmt, out = args.export or ("coco", None)
        if fmt != "coco":
            raise ValueError(f"--export {fmt}: the one format is coco")
        review = CaseReview(args.case_dir)
        if args.report:
            paths = write_reports(review, args.report)
            print(
                f"{len(paths)} report files (the case and {len(review.cells)} cells) -> "
                f"{args.report}"
            )
        if out is None:
            return 0
        coco = review.coco()
    except (ValueError, ReviewError) as e:
        raise SystemExit(f"deepacc review: error: {e}") from None
    write_atomic(out, json.dumps(coco, indent=1))
    n_cells, n_chromosomes = len(coco["images"]), len(coco["annotations"])
    print(f"{n_cells} reviewed cell(s), {n_chromosomes} chromosomes -> {out}")
    return 0


def _add_model_commands(sub):
    """eval, predict and export."""
    p = sub.add_parser("eval", help="metrics (mAP, mAPmax, Acc, AER) of a model on a dataset")
    p.add_argument("--dataset", help="registered dataset (default: the config's DATASETS.TEST)")
    p.add_argument("--output", default="output/eval")
    p.add_argument("--visualize", type=int, default=0, help="draw this many images")
    p.add_argument(
        "--score-thresh",
        type=float,
        help="pictures: draw top-1 detections scoring at least this (default: the "
        "config's TEST.KARYOTYPE.SCORE_THRESH; the metrics always use that)",
    )
    _model_args(p)
    p = sub.add_parser("predict", help="detect and name chromosomes on image files")
    p.add_argument("--output", default="output/predict")
    p.add_argument(
        "--score-thresh",
        type=float,
        help="pictures: draw top-1 detections scoring at least this (default: the "
        "config's TEST.KARYOTYPE.SCORE_THRESH)",
    )
    _case_args(p, ("overlay", "none"), "a picture per image (overlay) or none")
    p.add_argument("inputs", nargs="+", help="images or folders of images")
    _model_args(p)
    p = sub.add_parser("export", help="TorchScript or ONNX (traced) model for deployment")
    p.add_argument(
        "--output", default="output/export/model.ts", help="*.ts: TorchScript, *.onnx: ONNX"
    )
    p.add_argument("--sample", help="an image to trace with (default: a synthetic metaphase)")
    _model_args(p)


def _add_case_commands(sub):
    """karyotype and review."""
    p = sub.add_parser(
        "karyotype",
        help="karyogram, ISCN call and review flags per cell; the case karyotype over all cells",
    )
    p.add_argument("--output", default="output/karyotype")
    _case_args(
        p,
        ("all", "overlay", "none"),
        "per cell: the overlay beside the karyogram (all), the overlay alone, or none",
    )
    p.add_argument("inputs", nargs="+", help="images or folders of images (one case)")
    _model_args(p)
    p = sub.add_parser(
        "review", help="the review page of a karyotype case (a local web server), or its export"
    )
    p.add_argument("case_dir", help="an output folder of deepacc karyotype")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves beyond this machine")
    p.add_argument("--port", type=int, default=8000, help="0: any free port")
    p.add_argument(
        "--export",
        nargs=2,
        metavar=("FORMAT", "OUT"),
        help="write the reviewed cells (FORMAT coco: COCO json) to OUT instead of serving",
    )
    p.add_argument(
        "--report",
        metavar="OUT_DIR",
        help="write the reports to sign instead of serving: case_report.pdf|png and "
        "cell_<id>_report.pdf|png for each cell",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepacc", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("synth", help="generate synthetic metaphases (deepacc synth --help)")
    _add_model_commands(sub)
    _add_case_commands(sub)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "synth":
        return synth_main(argv[1:])

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "review":
        return _review(args)

    setup_logger(name="deepacc_d2", abbrev_name="deepacc")
    setup_logger(name="detectron2", abbrev_name="d2")
    logging.getLogger("deepacc_d2").setLevel(logging.INFO)
    if args.command == "eval":
        _eval(args)
        return 0
    if args.command == "export":
        return _export(args)
    if args.command == "karyotype":
        return _karyotype(args)
    return _predict(args)


if __name__ == "__main__":
    sys.exit(main())
