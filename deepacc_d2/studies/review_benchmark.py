"""
How many actions the review page takes per correction: a case of hand-built cells
(:func:`synthetic_case`, the review tests' case too), its server, and Debian's headless
chromium driven through a fixed list of corrections by a :class:`Hand` that counts what it does
(a click, a drag, a key, a class name typed) and times each correction until the server has
saved it. ``tools/review_benchmark.py`` prints the table; docs/studies/review_benchmark.md holds it.
"""

import os
import time
from typing import Dict, List

import numpy as np
from PIL import Image

from ..app.review.browser import headless_chromium, send_keys
from ..app.review.server import serving
from ..classes import CLASS_NAMES, NUM_CLASSES

HEIGHT, WIDTH = 260, 520
MOVE_MS = 20  # each pointer step of the hand: the seconds measure the page, not the hand


def normal(sex: str = "XY") -> List[str]:
    """The 46 class names of a normal cell."""
    return [c for c in CLASS_NAMES[:22] for _ in range(2)] + list(sex)


def grid_boxes(n: int) -> np.ndarray:
    """One 12x30 box per chromosome, 12 to a row; the image's bottom 70 px stay empty."""
    x, y = 40.0 * (np.arange(n) % 12) + 10, 50.0 * (np.arange(n) // 12) + 5
    return np.stack([x, y, x + 12, y + 30], axis=1)


def synthetic_case(root: str, cells: Dict[str, List[str]]) -> str:
    """
    A case folder as ``deepacc karyotype`` writes it, from hand-built detections: per cell an
    image (dark rods on white at the boxes, :func:`grid_boxes`) and confident calls (0.97) of
    its class names.

    Args:
        cells (dict): cell name -> the class names of its chromosomes.
    """
    from detectron2.config import get_cfg

    from ..app.config import add_application_config
    from ..app.karyotype.case_files import cell_outputs, save_cell, write_case
    from ..app.karyotype.cell import KaryotypeRules

    cfg = get_cfg()
    add_application_config(cfg)
    rules = KaryotypeRules.from_config(cfg)
    records = {}
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    for name, names in cells.items():
        boxes = grid_boxes(len(names))
        image = np.full((HEIGHT, WIDTH, 3), 235, np.uint8)
        for x1, y1, x2, y2 in boxes.astype(int):
            image[y1:y2, x1:x2] = 60
        path = os.path.join(str(root), "images", f"{name}.png")
        Image.fromarray(image).save(path)
        classes = np.array([CLASS_NAMES.index(c) for c in names])
        class_scores = np.zeros((len(names), NUM_CLASSES))
        class_scores[np.arange(len(names)), classes] = 0.97
        class_scores[np.arange(len(names)), (classes + 1) % NUM_CLASSES] = 0.02
        detections = {
            "boxes": boxes,
            "classes": classes,
            "scores": class_scores[np.arange(len(names)), classes],
            "class_scores": class_scores,
            "margins": np.full(len(names), np.inf),
        }
        record, picture = cell_outputs(image, detections, rules, "all")
        records[path] = save_cell(str(root), name, path, image.shape, record, picture)
    write_case(str(root), records, {}, rules, "all")
    return root


class Hand:
    """A person's hand on the page: each method is one action, counted as it is made (a class
    name typed is one action of its key presses)."""

    def __init__(self, driver):
        self.driver = driver
        self.clicks = self.drags = self.keys = self.names = self.key_presses = 0

    def actions(self) -> int:
        return self.clicks + self.drags + self.keys + self.names

    def said(self) -> str:
        done = [
            f"{n} {what if n == 1 else what + 's'}"
            for what, n in (("click", self.clicks), ("drag", self.drags), ("key", self.keys))
            if n
        ]
        if self.names:
            done.append(f"{self.names} class name{'s' * (self.names != 1)} typed")
        return ", ".join(done)

    def _pointer(self, points, hold=None):
        from selenium.webdriver.common.action_chains import ActionChains

        actions = ActionChains(self.driver, duration=MOVE_MS)
        if hold:
            actions.key_down(hold)
        pointer, key = actions.w3c_actions.pointer_action, actions.w3c_actions.key_action
        for k, at in enumerate(points):  # each pointer step a tick, the held key kept down
            pointer.move_to_location(int(at[0]), int(at[1]))
            key.pause()
            if k == 0:
                pointer.pointer_down()
                key.pause()
        pointer.pointer_up()
        key.pause()
        if hold:
            actions.key_up(hold)
        actions.perform()

    def click(self, at):
        self.clicks += 1
        self._pointer([at])

    def drag(self, start, end, hold=None, steps=6):
        self.drags += 1
        points = [
            (start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1]))
            for t in np.linspace(0, 1, steps + 1)
        ]
        self._pointer(points, hold)

    def key(self, key):
        """One key (or one chord: (Keys.CONTROL, "z"))."""
        self.keys += 1
        self.key_presses += 1
        send_keys(self.driver, [key], MOVE_MS)

    def name(self, text: str):
        """A class name typed."""
        self.names += 1
        self.key_presses += len(text)
        send_keys(self.driver, list(text), MOVE_MS)


class Page:
    """The page open on a case, and what a benchmark reads of it."""

    def __init__(self, driver, url):
        from selenium.webdriver.support.wait import WebDriverWait

        self.driver = driver
        self.wait = WebDriverWait(driver, 20)
        driver.get(url)
        self.wait.until(lambda d: self.js("return !!(page.record && page.layout)"))

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def on_screen(self, x, y):
        """A point of the metaphase, in image pixels, on the screen."""
        return self.js(
            "const p = new DOMPoint(arguments[0], arguments[1])"
            ".matrixTransform(document.getElementById('metaphase').getScreenCTM());"
            "return [p.x, p.y];",
            x,
            y,
        )

    def box(self, i, by=(0, 0)):
        """The centre of chromosome ``i``'s box on the screen, moved ``by`` image pixels."""
        x1, y1, x2, y2 = self.js("return page.record.detections[arguments[0]].bbox_xyxy", i)
        return self.on_screen((x1 + x2) / 2 + by[0], (y1 + y2) / 2 + by[1])

    def in_karyogram(self, selector, where=(0.5, 0.5)):
        r = self.js(
            "const r = document.querySelector('#karyogram-map ' + arguments[0])"
            ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height];",
            selector,
        )
        return r[0] + where[0] * r[2], r[1] + where[1] * r[3]

    def button(self, name):
        """The centre of the page's element ``name`` (an id) on the screen."""
        return self.js(
            "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
            "return [r.x + r.width / 2, r.y + r.height / 2];",
            name,
        )

    def version(self):
        return self.js("return page.record.version")

    def ready(self, cell=None, version=None):
        """The page settled: on ``cell``, at ``version``, its karyogram drawn for it."""
        self.wait.until(
            lambda d: self.js(
                "return !page.busy && page.layout && page.layout.version === page.record.version"
                " && document.getElementById('karyogram').complete"
                " && (arguments[0] === null || page.cellId === arguments[0])"
                " && (arguments[1] === null || page.record.version === arguments[1])",
                cell,
                version,
            )
        )


def benchmark_case(root: str) -> str:
    """The benchmark's case: "cellA" 46,XY, "cellB" 45,XY,-21, "cellC" 46,XX."""
    monosomy = normal()
    monosomy.remove("21")
    return synthetic_case(root, {"cellA": normal(), "cellB": monosomy, "cellC": normal("XX")})


def run_benchmark(case_dir: str, window=(1600, 900)) -> List[Dict]:
    """
    The fixed corrections (:func:`corrections`) on a :func:`benchmark_case`, each done as a
    person would and timed from its first action until the page shows what the server saved.

    Returns:
        list of dict: per correction "correction", "actions" (what the hand did), "count" (its
        actions), "keys" (key presses), "limit" (the most actions it should take), "seconds".
    """
    rows = []
    with serving(case_dir) as url, headless_chromium(window) as driver:
        page = Page(driver, f"{url}/#cellB")
        page.ready("cellB")
        for title, limit, steps, cell in corrections(page):
            hand = Hand(driver)
            start = time.perf_counter()
            for do, saves in steps:
                version = page.version()
                do(hand)
                page.ready(cell, version + saves if cell is None else None)
            rows.append(
                {
                    "correction": title,
                    "actions": hand.said(),
                    "count": hand.actions(),
                    "keys": hand.key_presses,
                    "limit": limit,
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
    return rows


def corrections(page: Page) -> List[tuple]:
    """
    The benchmark's corrections, in order, on the page open on "cellB" (45,XY,-21; boxes 12x30
    on a 40x50 grid, :func:`grid_boxes`).

    Returns:
        list of tuple: per correction its title, the most actions it should take, its steps
        ((what the hand does, the versions it saves), ...) and the cell the page is on after
        it (None: the same; a correction that moves on saves nothing).
    """
    from selenium.webdriver.common.keys import Keys

    def in_karyogram(start, end, where=(0.5, 0.5)):
        return lambda h: h.drag(page.in_karyogram(start), page.in_karyogram(end, where))

    chromosome = "rect.chromosome[data-index='{}']".format
    rename = lambda h: (h.click(page.box(44)), h.name("x"))
    to_slot = in_karyogram(chromosome(44), "rect.slot[data-class='Y']", (0.5, 0.92))
    swap = in_karyogram(chromosome(0), chromosome(2))
    undo = lambda h: h.key((Keys.CONTROL, "z"))
    draw_box = lambda h: h.drag(page.on_screen(400, 210), page.on_screen(416, 250), Keys.SHIFT)
    delete = lambda h: (h.click(page.box(5)), h.key(Keys.DELETE))
    move = lambda h: (h.click(page.box(6)), h.drag(page.box(6), page.box(6, (10, 8))))
    split = lambda h: (  # click, S, a line across the chromosome's middle
        h.click(page.box(7)),
        h.key("s"),
        h.drag(page.box(7, (-10, 0)), page.box(7, (10, 0))),
    )
    mark_reviewed = lambda h: h.click(page.button("mark-reviewed"))
    return [
        ("rename a chromosome: click it, type its class (the Y an X)", 2, [(rename, 1)], None),
        ("rename in the karyogram: drag it to a slot (the X back to Y)", 1, [(to_slot, 1)], None),
        ("swap two: drag a 1 onto a 2 in the karyogram", 1, [(swap, 1)], None),
        ("undo the swap: Ctrl+Z", 1, [(undo, 1)], None),
        (
            "add a missed 21: Shift+drag its box, type 21",
            2,
            [(draw_box, 1), (lambda h: h.name("21"), 1)],
            None,
        ),
        ("delete a false one: click it, Delete", 2, [(delete, 1)], None),
        ("move a box: click it, drag it", 2, [(move, 1)], None),
        ("split touching chromosomes: click, S, draw the dividing line", 3, [(split, 1)], None),
        ("mark reviewed (and on to the next cell to review)", 1, [(mark_reviewed, 0)], "cellC"),
        ("next cell to review: N", 1, [(lambda h: h.key("n"), 0)], "cellA"),
    ]


def markdown_table(rows: List[Dict]) -> str:
    lines = [
        "| correction | what the hand did | actions | at most | key presses | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['correction']} | {r['actions']} | {r['count']} | {r['limit']} | {r['keys']} "
            f"| {r['seconds']:.2f} |"
        )
    return "\n".join(lines)
