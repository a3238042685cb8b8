"""tools/install_detectron2.py gets the sdist through pip (the user's index, mirror or
wheelhouse) and refuses a file whose sha256 is not the pinned one."""

import os
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_sdist(folder):
    """A valid sdist named like the pinned one, but not it."""
    root = folder / "pb1-detectron2-0.6"
    root.mkdir()
    (root / "setup.py").write_text(
        "from setuptools import setup\nsetup(name='pb1-detectron2', version='0.6')\n"
    )
    (root / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: pb1-detectron2\nVersion: 0.6\n")
    path = folder / "pb1-detectron2-0.6.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(root, arcname="pb1-detectron2-0.6")
    return path


@pytest.fixture
def offline_wheelhouse(tmp_path, monkeypatch):
    """pip pointed at an offline wheelhouse holding a fake sdist, as a lab behind its own
    mirror would configure it."""
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    _fake_sdist(wheelhouse)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse))
    return wheelhouse


def test_download_goes_through_pip_configuration(tmp_path, offline_wheelhouse, load_tool):
    installer = load_tool("install_detectron2")
    dest = tmp_path / "dest"
    dest.mkdir()
    path = installer.fetch_sdist(str(dest))
    assert os.path.dirname(path) == str(dest) and os.path.isfile(path)
    # ... and the pinned sha256 refuses that file, naming it.
    with pytest.raises(SystemExit, match="does not match the pinned"):
        installer.install_from_sdist(path)


def test_download_failure_says_what_to_do(tmp_path, monkeypatch, load_tool):
    installer = load_tool("install_detectron2")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))  # empty: nothing to find
    with pytest.raises(SystemExit, match="--sdist PATH"):
        installer.fetch_sdist(str(tmp_path))


def test_no_host_name_in_the_installer():
    with open(os.path.join(REPO, "tools", "install_detectron2.py")) as f:
        assert "http" not in f.read()


def test_download_only_keeps_a_checked_sdist_and_refuses_another(
    tmp_path, monkeypatch, offline_wheelhouse, load_tool
):
    installer = load_tool("install_detectron2")
    dest = tmp_path / "carry"
    monkeypatch.setattr(installer, "install_from_sdist", lambda _: pytest.fail("installed"))
    monkeypatch.setattr("sys.argv", ["install_detectron2.py", "--download-only", str(dest)])
    with pytest.raises(SystemExit, match="does not match the pinned"):  # the fake is not it
        installer.main()
    assert (dest / "pb1-detectron2-0.6.tar.gz").is_file()  # downloaded, never installed
    # the pinned digest of the same bytes passes
    monkeypatch.setattr(
        installer, "SDIST_SHA256", installer.sha256_of(str(dest / installer.SDIST_NAME))
    )
    installer.main()
