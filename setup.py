import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# The model zoo (deepacc_d2/app/model_zoo.py): the repository's configs/ and models/ are its one
# source; a built package carries a copy of both under deepacc_d2/model_zoo_files/, so that
# `pip install .` (not -e) knows its models by name. An editable install reads the checkout.
MODEL_ZOO_FOLDERS = ("configs", "models")


class BuildPyWithModelZoo(build_py):
    """build_py that also copies the model zoo's folders, whole, into the built package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        here = os.path.dirname(os.path.abspath(__file__))
        target = os.path.join(self.build_lib, "deepacc_d2", "model_zoo_files")
        shutil.rmtree(target, ignore_errors=True)  # no file left from an earlier build
        for folder in MODEL_ZOO_FOLDERS:
            self.copy_tree(os.path.join(here, folder), os.path.join(target, folder))


setup(
    name="deepacc_d2",
    version="0.1.0",
    description="DeepACC for detectron2: chromosome detection and classification on whole "
    "G-banded metaphase images",
    packages=find_packages(include=["deepacc_d2", "deepacc_d2.*"]),
    package_data={"deepacc_d2.app.review": ["static/*"]},
    python_requires=">=3.10",
    # detectron2 is not on PyPI: see README / tools/install_detectron2.py. The tested pins of
    # everything (torch 2.14.1 among them) are in requirements.txt, which `make` installs.
    install_requires=[
        "torch",
        "torchvision",
        "scipy",
        "tabulate",
        "pyyaml",
        "fvcore",
        "pycocotools",
        "opencv-python-headless",
        "numpy",
        "pillow",
        "matplotlib",
        "tqdm",
        "pyryotype",
        "iscn-authenticator",
        "flask",
    ],
    extras_require={
        "onnx": ["onnx", "onnxruntime"],  # `deepacc export --output *.onnx`
        "test": ["pytest", "selenium"],  # selenium drives Debian's chromium (review page)
    },
    cmdclass={"build_py": BuildPyWithModelZoo},
    entry_points={"console_scripts": ["deepacc = deepacc_d2.app.cli:main"]},
)
