#!/usr/bin/env python
"""
Install detectron2's Python package into the current interpreter, without compiling.

detectron2 has no official wheel. If ``import detectron2`` already works (a user's own
source build, v0.6 or main) this script leaves it alone. Otherwise pip itself downloads the
sdist ``pb1-detectron2==0.6`` (the official v0.6 Python sources, without
``detectron2/layers/csrc``) from whatever index, mirror, proxy or wheelhouse pip is configured
for (pip.conf, PIP_INDEX_URL, PIP_FIND_LINKS, ...), this script checks its sha256, and installs
the ``detectron2`` package
from it as distribution ``detectron2==0.6`` with no C++ extension. What the missing
extension disables is handled by ``deepacc_d2.compat``.

Usage: python tools/install_detectron2.py [--sdist PATH] [--force] [--download-only DIR]
"""

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

SDIST_REQUIREMENT = "pb1-detectron2==0.6"
SDIST_NAME = "pb1-detectron2-0.6.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"

# Only the Python package and its data files; no ext_modules, so nothing compiles.
_SETUP_PY = """
from setuptools import setup, find_packages
setup(
    name="detectron2",
    version="0.6",
    description="detectron2 v0.6 Python sources (from pb1-detectron2 sdist), no C++ extension",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]},
    include_package_data=False,
    python_requires=">=3.6",
)
"""


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pip_download_command(dest_dir):
    """pip's own download of the sdist: the user's pip configuration decides where from."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--no-build-isolation",
        "--disable-pip-version-check",
        "-q",
        "-d",
        dest_dir,
        SDIST_REQUIREMENT,
    ]


def fetch_sdist(dest_dir):
    print(f"[install_detectron2] pip download {SDIST_REQUIREMENT}")
    result = subprocess.run(pip_download_command(dest_dir), capture_output=True, text=True)
    path = os.path.join(dest_dir, SDIST_NAME)
    if result.returncode != 0 or not os.path.isfile(path):
        raise SystemExit(
            f"[install_detectron2] pip could not download {SDIST_REQUIREMENT} with this "
            f"machine's pip configuration:\n{result.stdout[-2000:]}{result.stderr[-2000:]}\n"
            f"Offline: download {SDIST_NAME} elsewhere and pass --sdist PATH."
        )
    return path


def check_sha256(sdist):
    digest = sha256_of(sdist)
    if digest != SDIST_SHA256:
        raise SystemExit(
            f"[install_detectron2] {sdist}: sha256 {digest} does not match the pinned "
            f"{SDIST_SHA256}; refusing to install it."
        )


def install_from_sdist(sdist):
    check_sha256(sdist)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (root,) = [os.path.join(tmp, d) for d in os.listdir(tmp)]
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        shutil.copytree(os.path.join(root, "detectron2"), os.path.join(src, "detectron2"))
        shutil.copy(os.path.join(root, "LICENSE"), src)
        with open(os.path.join(src, "setup.py"), "w") as f:
            f.write(_SETUP_PY)
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", src]
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", help="a local copy of " + SDIST_NAME + " (skips the download)")
    parser.add_argument("--force", action="store_true", help="install even if detectron2 imports")
    parser.add_argument(
        "--download-only",
        metavar="DIR",
        help="only download the sdist into DIR and check it (for a machine without an index)",
    )
    args = parser.parse_args()

    if args.download_only:
        os.makedirs(args.download_only, exist_ok=True)
        path = fetch_sdist(args.download_only)
        check_sha256(path)
        print(f"[install_detectron2] {path}: sha256 checked")
        return

    if importlib.util.find_spec("detectron2") is not None and not args.force:
        import detectron2

        print(
            f"[install_detectron2] detectron2 {detectron2.__version__} already importable "
            f"from {os.path.dirname(detectron2.__file__)}; leaving it alone."
        )
        return
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or fetch_sdist(tmp)
        install_from_sdist(sdist)
    print("[install_detectron2] installed detectron2 0.6 (Python only, no detectron2._C)")


if __name__ == "__main__":
    main()
