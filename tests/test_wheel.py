"""The built package works without the checkout: a wheel of the project, installed into a
folder of its own and run from a folder outside the checkout, knows its shipped models by
name (their configs and weights inside the installed package) and predicts with one."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _copy_sources(target):
    """The checkout's files as git sees them (tracked, or new and not ignored): no build/,
    .venv or output/ of the checkout reaches the wheel, and the test writes nothing there."""
    if shutil.which("git") is None or not os.path.isdir(os.path.join(REPO, ".git")):
        pytest.skip("needs the git checkout (its file list) to build the wheel from")
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO)
    for name in filter(None, listed.split("\0")):
        if os.path.isfile(os.path.join(REPO, name)):  # not a tracked file deleted here
            os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), os.path.join(target, name))


def _metaphase_like(path):
    """200 x 200 white, a few dark rods."""
    image = Image.new("RGB", (200, 200), "white")
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in [(30, 30, 45, 90), (80, 40, 150, 52), (60, 120, 72, 180)]:
        draw.rounded_rectangle((x0, y0, x1, y1), radius=5, fill=(60, 60, 60))
    draw.line((120, 110, 170, 170), fill=(40, 40, 40), width=12)
    image.save(path)


@pytest.mark.slow
def test_installed_wheel_predicts_with_a_shipped_model_outside_the_checkout(tmp_path):
    src, wheels, site, run = (tmp_path / d for d in ("src", "wheels", "site", "run"))
    _copy_sources(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)])
    (wheel,) = wheels.glob("deepacc_d2-*.whl")
    _run(pip + ["install", "--no-deps", "--no-index", "--target", str(site), str(wheel)])

    # The project's interpreter (torch, detectron2) with the installed package first on the
    # path: it comes before the editable install of the checkout, which the check confirms.
    run.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("DEEPACC_MODELS", None)
    resolved = _run(
        [
            sys.executable,
            "-c",
            "import json, deepacc_d2; from deepacc_d2.app.model_zoo import resolve_model; "
            "print(json.dumps([deepacc_d2.__file__, resolve_model('cil-r18-crops')]))",
        ],
        cwd=run,
        env=env,
    )
    package_file, (config, weights, opts) = json.loads(resolved.splitlines()[-1])
    package = os.path.join(str(site), "deepacc_d2")
    assert os.path.dirname(package_file) == package
    for path in [config, weights] + opts[1::2]:
        assert os.path.isfile(path) and path.startswith(package + os.sep), path
    assert opts[0] == "MODEL.SECOND_LOOK.WEIGHTS"

    _metaphase_like(run / "cell.png")
    command = [sys.executable, "-m", "deepacc_d2.app.cli", "predict", "--weights", "cil-r18-crops"]
    _run(command + ["--workers", "1", "--output", "out", "cell.png"], cwd=run, env=env)
    with open(run / "out" / "predictions.json") as f:
        written = json.load(f)
    assert list(written["predictions"]) == ["cell.png"] and written["errors"] == {}
