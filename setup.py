from setuptools import find_packages, setup

setup(
    name="deepacc_d2",
    version="0.1.0",
    description="DeepACC for detectron2: chromosome detection and classification on whole "
    "G-banded metaphase images",
    packages=find_packages(include=["deepacc_d2", "deepacc_d2.*"]),
    package_data={"deepacc_d2.review": ["static/*"]},
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
    entry_points={"console_scripts": ["deepacc = deepacc_d2.cli:main"]},
)
