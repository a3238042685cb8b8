"""
The documentation against the code and against itself: the README's config-key table is the
generated one, every config key has its comment, the shipped models' numbers are written only
in MODEL_ZOO.md, each study page opens with its date, and every relative link points at a file
(and a heading) that exists.
"""

import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def manual_pages():
    """README.md and the manual of docs/ (the studies of docs/studies/ apart)."""
    return ["README.md"] + sorted(
        os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md"))
    )


def study_pages():
    return sorted(
        os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "studies", "*.md"))
    )


def linked_pages():
    """The pages whose relative links must resolve."""
    docs = glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True)
    return ["README.md", "MODEL_ZOO.md", os.path.join("tools", "README.md")] + sorted(
        os.path.relpath(p, REPO) for p in docs
    )


# ---------------------------------------------------------------- the config keys


@pytest.fixture(scope="module")
def config_keys():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "config_keys", os.path.join(REPO, "tools", "config_keys.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_config_table_is_the_generated_one(config_keys):
    written = config_keys.generated_part(read("README.md"))
    assert written == config_keys.markdown_table(), (
        "README.md's config-key table is not current: python tools/config_keys.py --update "
        "README.md"
    )


def test_every_added_key_has_a_comment(config_keys):
    rows = config_keys.added_keys()
    assert {r["layer"] for r in rows} == {"core", "app"}
    assert any(r["key"] == "MODEL.DEEPACC.AAM.SCALE" for r in rows)
    assert any(r["key"] == "TEST.KARYOTYPE.COUNT_JUDGE" and r["layer"] == "app" for r in rows)
    missing = [f"{r['key']} ({r['source']})" for r in rows if not r["comment"].strip()]
    assert not missing, f"keys without a comment beside them: {missing}"


def test_source_comments_are_read_beside_the_assignment(config_keys, tmp_path):
    source = tmp_path / "adder.py"
    source.write_text(
        "def add(cfg):\n"
        "    _C = cfg\n"
        "    # a section comment\n"
        "    _C.A = CN()\n"
        "    _C.A.B = 0.5  # the meaning, symbol, values\n"
        "    _C.A.TEXT = 'x # y'  # a string with a hash\n"
        "    # a comment of two lines\n"
        "    # right above its key\n"
        "    _C.A.C = (\n"
        "        1, 2)\n"
        "\n"
        "    _C.A.D = 1\n"
    )
    comments = {k: c for k, (_, c) in config_keys.source_comments(str(source)).items()}
    assert comments["A.B"] == "the meaning, symbol, values"
    assert comments["A.TEXT"] == "a string with a hash"
    assert comments["A.C"] == "a comment of two lines right above its key"
    assert comments["A.D"] == ""


# ---------------------------------------------------------------- numbers written once


def shipped_numbers():
    """The headline numbers of the shipped models as MODEL_ZOO.md writes them: (metric, value)
    of each model's val metrics, and ("", "N %") of the karyotype step's cells and of the crop
    classifier's accuracy."""
    zoo = read("MODEL_ZOO.md")
    numbers = set()
    for row in re.findall(r"^\| val metrics [^|]*\| ([^|]*)\|", zoo, re.M):
        found = re.findall(r"\b(mAP|mAPmax|AP50|Acc|AER) (\d+\.\d)", row.split("(")[0])
        assert len(found) == 5, row
        numbers |= set(found)
    karyotype = re.search(r"^\| karyotype [^|]*\| ([\d.]+) % .*?, ([\d.]+) % called", zoo, re.M)
    crops = re.search(r"^\| crop classifier [^|]*\| top-1 ([\d.]+) %, top-2 ([\d.]+) %", zoo, re.M)
    assert karyotype and crops, "MODEL_ZOO.md: the karyotype or crop classifier row is missing"
    numbers |= {("", f"{v} %") for v in karyotype.groups() + crops.groups()}
    return sorted(numbers)


def test_model_zoo_holds_the_headline_numbers():
    numbers = shipped_numbers()
    assert {name for name, _ in numbers} == {"mAP", "mAPmax", "AP50", "Acc", "AER", ""}
    assert len(numbers) >= 12, numbers


@pytest.mark.parametrize("page", manual_pages())
def test_shipped_numbers_are_written_only_in_the_model_zoo(page):
    text = read(page)
    found = []
    for name, value in shipped_numbers():
        number = re.escape(value).replace(r"\ %", r"\s?%")
        pattern = (rf"\b{name}\s*[:=]?\s*" if name else r"(?<![\d.])") + number + r"(?!\d)"
        if re.search(pattern, text):
            found.append(f"{name} {value}".strip())
    assert not found, (
        f"{page} repeats shipped numbers {found}: link to MODEL_ZOO.md instead "
        "(a study's own numbers belong in docs/studies/)"
    )


# ---------------------------------------------------------------- studies are dated


@pytest.mark.parametrize("page", study_pages())
def test_each_study_opens_with_its_date(page):
    opening = "\n".join(read(page).splitlines()[:5])
    assert re.search(r"\b20\d\d-\d\d-\d\d\b", opening), f"{page}: no date in its first lines"
    assert "python " in read(page) or "deepacc " in read(page), f"{page}: no command"


# ---------------------------------------------------------------- links


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _without_code(text):
    """The text without fenced code blocks and inline code spans."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def heading_anchors(path):
    """GitHub's anchors of a markdown file's headings (duplicates numbered -1, -2, ...)."""
    text = re.sub(r"^```.*?^```", "", read(path), flags=re.M | re.S)
    anchors, seen = set(), {}
    for line in text.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).lower()
        slug = "".join(c for c in title if c.isalnum() or c in "-_ ").replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


@pytest.mark.parametrize("page", linked_pages())
def test_relative_links_point_at_existing_files(page):
    broken = []
    for target in LINK.findall(_without_code(read(page))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
            continue  # http(s), mailto, ...
        path, _, anchor = target.partition("#")
        resolved = (
            os.path.join(REPO, page)
            if not path
            else os.path.normpath(os.path.join(REPO, os.path.dirname(page), path))
        )
        if not os.path.exists(resolved):
            broken.append(target)
        elif anchor and resolved.endswith(".md"):
            if anchor not in heading_anchors(os.path.relpath(resolved, REPO)):
                broken.append(f"{target} (no such heading)")
    assert not broken, f"{page}: broken links {broken}"
