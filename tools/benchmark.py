#!/usr/bin/env python
"""
Speed of the models against this machine's floor: per config, the FLOPs of one inference
(fvcore), this device's measured matmul rate, training seconds per step and images per second,
inference seconds per image (eager fp32, eager bf16 + channels_last on a CPU with bf16, the
TorchScript and ONNX Runtime exports on the CPU), each over the floor (FLOPs / rate), and the
peak memory. Prints a table and writes it with the machine, the versions and the command to
``--out``.

    python tools/benchmark.py                                   # the CPU models, 512 px
    python tools/benchmark.py --paper                           # + R101-FPN at 1600x1200
    python tools/benchmark.py --device cuda --out docs/studies/benchmarks_gpu.md
    python tools/benchmark.py --configs "configs/cpu/f_deepacc_cpu.yaml MODEL.FPN.OUT_CHANNELS 32"
    python tools/benchmark.py --case cil24_val --images 24 --out docs/studies/benchmarks_case.md

``--case`` (a folder, or a registered dataset's first ``--images``): how close ``deepacc
predict`` and ``deepacc karyotype`` come to the model's own speed: the model's forward passes
alone (images read and resized beforehand, one process with all its threads; and in the
commands' worker processes), each command in one process (its stages are the profile) and in
its default worker processes, in images per second.

Each ``--configs`` entry is a config file, optionally followed by ``KEY VALUE`` overrides
(split at white space; a value has none).

A training step's FLOPs are taken as 3x the inference FLOPs (forward + backward); its floor is
stated with that approximation.
"""

import argparse
import contextlib
import datetime
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

import deepacc_d2  # noqa: F401  (compat fixes, registrations)
from deepacc_d2.app.case import case_workers, list_images, run_case
from deepacc_d2.app.config import setup_cfg
from deepacc_d2.app.karyotype.case_files import karyotype_files
from deepacc_d2.app.model_zoo import resolve_model
from deepacc_d2.app.predict import predict_files
from deepacc_d2.data.images import read_metaphase
from deepacc_d2.engine.precision import cpu_bf16_inference, cpu_has_bf16
from deepacc_d2.engine.predictor import load_model, model_input

from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

# The former CPU model, the reference of the CPU model's speed-up: detectron2's ResNet-18 + FPN
# (128 channels) on P2-P6.
RESNET18_FPN128 = (
    "MODEL.BACKBONE.NAME build_resnet_fpn_backbone MODEL.RESNETS.STEM_OUT_CHANNELS 64 "
    "MODEL.RESNETS.RES2_OUT_CHANNELS 64 MODEL.FPN.OUT_CHANNELS 128 "
    'MODEL.FPN.IN_FEATURES ["res2","res3","res4","res5"] '
    'MODEL.RPN.IN_FEATURES ["p2","p3","p4","p5","p6"] '
    'MODEL.ROI_HEADS.IN_FEATURES ["p2","p3","p4","p5"] '
    "MODEL.ANCHOR_GENERATOR.SIZES [[32],[64],[128],[256],[512]]"
)
CPU_A, CPU_F = "configs/cpu/a_faster_rcnn_cpu.yaml", "configs/cpu/f_deepacc_cpu.yaml"
CPU_CONFIGS = [f"{CPU_A} {RESNET18_FPN128}", CPU_A, CPU_F]
PAPER_CONFIGS = ["configs/table1/f_deepacc.yaml"]
EXPORTS = {"TorchScript": ".ts", "ONNX Runtime": ".onnx"}


def matmul_rate(dtype, device, n=2048, repeat=10):
    """Measured multiply-add throughput of an n x n matmul, in GFLOP/s (2 n^3 per product)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    _sync(device)
    return 2 * n**3 * repeat / (time.perf_counter() - start) / 1e9


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def sample_batch(size, num_images, device, seed=0):
    """Synthetic-looking inputs of the model's input size with 46 boxes each (timing only)."""
    rng = np.random.default_rng(seed)
    h, w = size
    batch = []
    for _ in range(num_images):
        image = torch.as_tensor(rng.integers(0, 255, (3, h, w), dtype=np.uint8))
        xy = rng.uniform(0, [w - 80, h - 80], size=(46, 2))
        wh = rng.uniform(15, 70, size=(46, 2))
        inst = Instances(
            (h, w),
            gt_boxes=Boxes(torch.as_tensor(np.hstack([xy, xy + wh]), dtype=torch.float32)),
            gt_classes=torch.as_tensor(rng.integers(0, 24, 46)),
        )
        batch.append({"image": image.to(device), "height": h, "width": w, "instances": inst})
    return batch


def _inference_without_postprocess(model, inputs):
    return model.inference(inputs, do_postprocess=False)


def timed(fn, warmup, repeat, device):
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeat


def bf16_context(on, device):
    if not on:
        return contextlib.nullcontext()
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)


def entry_label(entry):
    """A ``--configs`` entry as its table row names it: the config's file name and the keys."""
    config, *opts = entry.split()
    return " ".join([os.path.basename(config)] + opts)


def measure(entry, size, args):
    """One config: FLOPs, train s/step (fp32, bf16), inference s/image (fp32, bf16, exports)."""
    config, *opts = entry.split()  # values as yacs reads them: ["p3","p4"] keeps its quotes
    cfg = setup_cfg(config, opts + ["MODEL.DEVICE", args.device, "MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    model = build_model(cfg)
    device = args.device
    row = {"config": entry_label(entry), "size": f"{size[0]}x{size[1]}"}
    model.eval()
    one = [{k: v for k, v in sample_batch(size, 1, device)[0].items() if k != "instances"}]
    with torch.no_grad():
        # detectron2's FlopCountAnalysis without detectron2.utils.analysis (whose import of
        # detectron2.export needs caffe2 on 0.6): fvcore on the traced adapter
        from fvcore.nn import FlopCountAnalysis

        from deepacc_d2.app.export import tracing_adapter_class

        image_only = [{"image": one[0]["image"]}]
        adapter = tracing_adapter_class()(model, image_only, _inference_without_postprocess)
        flops = FlopCountAnalysis(adapter, adapter.flattened_inputs)
        flops.unsupported_ops_warnings(False)
        flops.uncalled_modules_warnings(False)
        row["GFLOPs"] = flops.total() / 1e9  # fvcore counts one multiply-add as one flop
    row["GFLOPs"] *= 2  # as multiply + add, the unit of the matmul rate
    bf16 = args.bf16
    with torch.no_grad():
        row["infer fp32 s"] = timed(lambda: model(one), 1, args.repeat, device)
        if bf16:
            model_cl = model.to(memory_format=torch.channels_last)
            with bf16_context(True, device):
                row["infer bf16 s"] = timed(lambda: model_cl(one), 1, args.repeat, device)
            model.to(memory_format=torch.contiguous_format)
        for name, extension in EXPORTS.items():
            row[f"infer {name} s"] = exported_time(model, one, extension, args)
    if not args.no_train:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        batch = sample_batch(size, args.batch, device)

        def step(on):
            with bf16_context(on, device):
                losses = sum(model(batch).values())
            opt.zero_grad()
            losses.backward()
            opt.step()

        with EventStorage():  # the losses log to it
            row["train fp32 s/step"] = timed(lambda: step(False), 1, args.repeat, device)
            if bf16:
                row["train bf16 s/step"] = timed(lambda: step(True), 1, args.repeat, device)
    row["peak RSS GB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def exported_time(model, one, extension, args):
    """Seconds per image of the exported file (CPU: its deployment target), fp32."""
    from deepacc_d2.app.export import ExportedModel, export_model

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model" + extension)
        image = one[0]["image"].float().cpu()
        export_model(model.cpu(), image, path)
        model.to(args.device)
        exported = ExportedModel(path)
        return timed(lambda: exported.raw(image), 1, args.repeat, "cpu")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=CPU_CONFIGS)
    p.add_argument("--size", type=int, nargs=2, default=(512, 688), metavar=("H", "W"))
    p.add_argument(
        "--paper",
        action="store_true",
        help="also the paper's R101-FPN (f) at 1200x1600, inference only",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=2, help="training images per step")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--out", default="docs/studies/benchmarks.md")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument(
        "--case", help="a folder of metaphases or a registered dataset: the commands' speed"
    )
    p.add_argument("--images", type=int, default=24, help="--case: its first N images")
    p.add_argument("--weights", default="cil-r18-crops", help="--case: the model")
    args = p.parse_args()
    if args.case:
        return case_benchmark(args)
    args.bf16 = cpu_has_bf16() if args.device == "cpu" else args.device.startswith("cuda")

    if args.child:  # one config per process, so that peak memory is its own
        entry, h, w, no_train = args.child.rsplit(",", 3)
        args.no_train = no_train == "1"
        print(repr(measure(entry, (int(h), int(w)), args)))
        return

    torch.set_grad_enabled(True)
    rates = {"fp32": matmul_rate(torch.float32, args.device)}
    if args.bf16:
        rates["bf16"] = matmul_rate(torch.bfloat16, args.device)
    jobs = [(c, args.size, args.no_train) for c in args.configs]
    if args.paper:
        jobs += [(c, (1200, 1600), True) for c in PAPER_CONFIGS]
    rows = []
    for config, (h, w), no_train in jobs:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            f"{config},{h},{w},{int(no_train)}",
            "--device",
            args.device,
            "--batch",
            str(args.batch),
            "--repeat",
            str(args.repeat),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{config}: benchmark failed")
        rows.append(eval(out.stdout.strip().splitlines()[-1]))  # noqa: S307 (our own repr)

    lines = table(rows, rates, args)
    text = "\n".join(lines)
    print(text)
    header = [
        "# Benchmarks",
        "",
        f"{datetime.date.today()}.",
        "",
        f"Made by `python tools/benchmark.py {shlex.join(sys.argv[1:])}`.",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, "
        f"{'bf16 instructions' if args.bf16 and args.device == 'cpu' else 'no CPU bf16'}; "
        f"device {args.device}; Python {platform.python_version()}, torch {torch.__version__}.",
        f"Measured matmul rate: {', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in rates.items())}.",
        "",
        "GFLOPs: one inference on one image, fvcore's count x 2 (multiply + add). Floor = GFLOPs "
        "/ matmul rate (training: 3 x GFLOPs per image); x floor = measured / floor. Random "
        "inputs with 46 boxes per image; times are means over the repeats after one warm-up.",
        "",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(header) + "\n" + text + "\n")
    print(f"written to {args.out}")


def case_images(case: str, count: int):
    """``--case``: a folder's images, or a registered dataset's first ``count``."""
    if os.path.isdir(case):
        return list_images([case])[:count]
    if case not in DatasetCatalog.list():
        raise SystemExit(f"--case {case}: neither a folder nor a registered dataset")
    return [d["file_name"] for d in DatasetCatalog.get(case)[:count]]


def case_benchmark(args):
    """The ``--case`` table (module docstring)."""
    config_file, weights, opts = resolve_model(args.weights)
    cfg = setup_cfg(config_file, opts, weights)
    paths = case_images(args.case, args.images)
    model = load_model(cfg)
    inputs = [model_input(read_metaphase(p), cfg.INPUT) for p in paths]
    with torch.no_grad(), cpu_bf16_inference(cfg, model):
        model([inputs[0]])  # warm-up
        start = time.perf_counter()
        for x in inputs:
            model([x])
        forward = len(inputs) / (time.perf_counter() - start)
    workers = case_workers(cfg, len(paths))
    threads = torch.get_num_threads()
    start = time.perf_counter()
    run_case(cfg, model, paths, lambda *_: None, lambda *_: None, "model", workers)
    forward_workers = len(paths) / (time.perf_counter() - start)
    rows = []
    stages = ["start-up", "read", "model", "selection", "karyogram", "pictures", "write"]
    with tempfile.TemporaryDirectory() as out:
        for name, run in (("predict", predict_files), ("karyotype", karyotype_files)):
            for n in sorted({1, workers}):
                timings = {}
                start = time.perf_counter()
                run(cfg, paths, os.path.join(out, f"{name}{n}"), workers=n, timings=timings)
                rows.append((name, n, time.perf_counter() - start, timings))
    n = len(paths)
    lines = [
        f"{n} images of `{args.case}`, model `{args.weights}`. The model's forward passes "
        f"alone, images read and resized beforehand, in one process with {threads} threads: "
        f"**{forward:.2f} images/s** (x forward = 1); in {workers} processes of one thread, "
        f"reading included: {forward_workers:.2f} images/s "
        f"({forward_workers / forward:.2f} x forward).",
        "",
        "| command | processes x threads | images/s (x forward) | without start-up | "
        + " | ".join(f"{s} s/img" for s in stages)
        + " |",
        "|---" * (4 + len(stages)) + "|",
    ]
    for name, workers, wall, timings in rows:
        rate = n / wall
        rate_run = n / (wall - timings.get("start-up", 0.0))
        lines.append(
            f"| deepacc {name} | {workers} x {1 if workers > 1 else threads} "
            f"| {rate:.2f} ({rate / forward:.2f}) | {rate_run:.2f} ({rate_run / forward:.2f}) | "
            + " | ".join(f"{timings.get(s, 0.0) / n:.3f}" for s in stages)
            + " |"
        )
    lines += [
        "",
        "Stage seconds are added up over the processes: with one process they are the profile "
        "of the wall time; with several they add up to more than it.",
        "",
        "The workers write the same files as one process with one thread (tests/test_case.py). "
        "Against one process with several threads a score or box corner can differ in its "
        "last written digit: the model's sums run in another order.",
    ]
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as f:
        f.write(
            f"# Speed of a case\n\n{datetime.date.today()}.\n\n"
            f"Made by `python tools/benchmark.py {shlex.join(sys.argv[1:])}` "
            f"on {cpu_name()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"torch {torch.__version__}.\n\n{text}\n"
        )
    print(f"written to {args.out}")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def table(rows, rates, args):
    fp32, bf16 = rates["fp32"], rates.get("bf16")
    cols = ["config", "input", "GFLOPs", "infer fp32 s (x floor)"]
    if bf16:
        cols.append("infer bf16+CL s (x floor)")
    cols += [f"infer {name} s" for name in EXPORTS] + ["train fp32 s/step (img/s)"]
    if bf16:
        cols.append("train bf16 s/step (img/s)")
    cols.append("peak RSS GB")
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for r in rows:
        g = r["GFLOPs"]
        cells = [
            r["config"].replace(RESNET18_FPN128, "+ former ResNet-18-FPN128"),
            r["size"],
            f"{g:.1f}",
            f"{r['infer fp32 s']:.3f} ({r['infer fp32 s'] / (g / fp32):.1f})",
        ]
        if bf16:
            cells.append(
                f"{r['infer bf16 s']:.3f} ({r['infer bf16 s'] / (g / bf16):.1f})"
                if "infer bf16 s" in r
                else "–"
            )
        cells += [f"{r[f'infer {name} s']:.3f}" for name in EXPORTS]
        train = [("train fp32 s/step", fp32)] + ([("train bf16 s/step", bf16)] if bf16 else [])
        for key, rate in train:
            t, floor = r.get(key), 3 * g * args.batch / rate
            cells.append(f"{t:.2f} ({args.batch / t:.2f}, {t / floor:.1f})" if t else "–")
        cells.append(f"{r['peak RSS GB']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    by_entry = {r["config"]: r for r in rows}
    named = {
        k: by_entry.get(entry_label(c))
        for k, c in [("ref", CPU_CONFIGS[0]), ("a", CPU_A), ("f", CPU_F)]
    }
    if named["a"] and named["f"] and named["a"]["size"] == named["f"]["size"]:
        lines += [
            "",
            f"Head cost: (f) / (a) inference time on the CPU model (fp32, same trunk and input) = "
            f"{named['f']['infer fp32 s'] / named['a']['infer fp32 s']:.2f}.",
        ]
    if named["ref"] and named["a"] and "train fp32 s/step" in named["ref"]:
        best = "train bf16 s/step" if bf16 else "train fp32 s/step"
        lines.append(
            f"Training speed-up: the CPU model (a) {'bf16' if bf16 else 'fp32'} vs the former "
            f"ResNet-18-FPN128 model (a) fp32 = "
            f"{named['ref']['train fp32 s/step'] / named['a'][best]:.1f}x images per second."
        )
    return lines


if __name__ == "__main__":
    main()
