"""
The review page in a real headless browser (Debian's chromium through Selenium): open a case,
change a class, delete a box, draw a missed one, see the call follow each change, reload and
find the changes kept, mark the cell reviewed, and load the page's COCO export as a
detectron2 dataset with the corrected labels. Then the page as a hand meets it: drags left
half-drawn, boxes on top of boxes, classes typed on the keyboard.
"""

import json
import time
import urllib.request
from contextlib import contextmanager

import pytest
from conftest import normal

from deepacc_d2.app.review.browser import headless_chromium, missing_browser, send_keys
from deepacc_d2.app.review.log import LOG_NAME
from deepacc_d2.app.review.server import serving
from deepacc_d2.app.review.store import CaseReview
from deepacc_d2.classes import CLASS_NAMES
from deepacc_d2.data.datasets import register_coco_folders

from detectron2.data import DatasetCatalog

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))


@pytest.mark.slow
def test_review_a_cell_in_the_browser(review_case, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    with serving(str(review_case)) as url, headless_chromium() as driver:
        wait = WebDriverWait(driver, 20)

        def boxes():
            return driver.find_elements(By.CSS_SELECTOR, "#metaphase rect.chromosome")

        def box(i):  # by the chromosome's index: the boxes are drawn largest first
            return driver.find_element(By.CSS_SELECTOR, f"#metaphase rect[data-index='{i}']")

        def call_is(text):
            wait.until(lambda d: d.find_element(By.ID, "call").text == text)

        driver.get(url)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cells button")) == 2)
        driver.find_element(By.CSS_SELECTOR, "#cells button[data-cell='cellB']").click()
        call_is("45,XY,-21")
        assert len(boxes()) == 45

        # change a class: the Y (chromosome 44) is an X
        box(44).click()
        Select(driver.find_element(By.ID, "class-select")).select_by_value("X")
        call_is("45,XX,-21")

        # delete a box: chromosome 0, a 1
        box(0).click()
        driver.find_element(By.ID, "delete").click()
        call_is("44,XX,-1,-21")
        assert len(boxes()) == 44

        # add the missed 21: drag a box on the empty bottom of the metaphase
        Select(driver.find_element(By.ID, "add-class")).select_by_value("21")
        driver.find_element(By.ID, "add-mode").click()
        svg = driver.find_element(By.ID, "metaphase")
        scale = svg.rect["width"] / 520  # the image is 520 px wide
        start = (400 * scale - svg.rect["width"] / 2, 210 * scale - svg.rect["height"] / 2)
        drag = ActionChains(driver).move_to_element_with_offset(svg, *map(int, start))
        drag.click_and_hold().move_by_offset(int(16 * scale), int(40 * scale)).release().perform()
        call_is("45,XX,-1")
        assert len(boxes()) == 45
        assert "46" not in driver.find_element(By.ID, "total").text

        # reload: the changes are on the server, not only in the page
        driver.refresh()
        call_is("45,XX,-1")
        kept = [b.get_attribute("data-class") for b in boxes()]
        assert kept.count("X") == 2 and kept.count("Y") == 0 and kept.count("21") == 2
        assert "version 3" in driver.find_element(By.ID, "total").text
        added = box(len(boxes()) - 1)
        assert "person" in added.get_attribute("class")

        driver.find_element(By.ID, "mark-reviewed").click()
        wait.until(lambda d: "reviewed 1" in d.find_element(By.ID, "case-summary").text)
        wait.until(lambda d: d.find_element(By.ID, "cell-name").text == "cellA")  # moved on
        reviewed = driver.find_element(By.CSS_SELECTOR, "#cells button[data-cell='cellB']")
        assert "✓ reviewed" in reviewed.text
        report = driver.find_element(By.ID, "cell-report").get_attribute("href")
        assert report == f"{url}/api/cells/cellA/report.pdf"  # the open cell's
        assert urllib.request.urlopen(report).read().startswith(b"%PDF-")
        driver.save_screenshot(str(tmp_path / "page.png"))
        href = driver.find_element(By.ID, "export").get_attribute("href")

    # the page's export is a dataset with the corrected labels
    with serving(str(review_case)) as url:
        coco = urllib.request.urlopen(url + href[href.index("/api/") :]).read()
    folder = tmp_path / "datasets" / "page_reviewed" / "annotations"
    folder.mkdir(parents=True)
    (folder / "train.json").write_bytes(coco)
    register_coco_folders(str(tmp_path / "datasets"))
    (d,) = DatasetCatalog.get("page_reviewed_train")
    expected = normal("XX")  # the Y renamed X, the missed 21 added
    expected.remove("1")  # the 1 deleted
    assert sorted(CLASS_NAMES[a["category_id"]] for a in d["annotations"]) == sorted(expected)
    x1, y1, x2, y2 = d["annotations"][-1]["bbox"]
    assert abs(x1 - 400) < 3 and abs(y1 - 210) < 3 and abs(x2 - 416) < 3 and abs(y2 - 250) < 3
    assert (tmp_path / "page.png").stat().st_size > 10_000
    assert json.loads(coco)["categories"][22]["name"] == "X"


@contextmanager
def cell_page(case_dir, cell):
    """The page open on a cell: yields the driver and ``click_at(x, y)``, a click at that point
    of the metaphase in image pixels, as a person makes it (whatever lies on top there)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    with serving(str(case_dir)) as url, headless_chromium() as driver:
        driver.get(f"{url}/#{cell}")
        WebDriverWait(driver, 20).until(
            lambda d: (
                d.find_element(By.ID, "cell-name").text == cell
                and d.find_elements(By.CSS_SELECTOR, "#metaphase rect.chromosome")
            )
        )

        def on_screen(x, y):
            return driver.execute_script(
                "const svg = document.getElementById('metaphase');"
                "const p = new DOMPoint(arguments[0], arguments[1])"
                ".matrixTransform(svg.getScreenCTM());"
                "return [Math.round(p.x), Math.round(p.y)];",
                x,
                y,
            )

        def click_at(x, y):
            actions = ActionChains(driver)
            actions.w3c_actions.pointer_action.move_to_location(*on_screen(x, y)).click()
            actions.perform()

        driver.on_screen = on_screen
        yield driver, click_at


def selected(driver):
    return driver.execute_script(
        "const r = document.querySelector('#metaphase rect.selected');"
        "return r ? Number(r.dataset.index) : null;"
    )


def review_log(case_dir):
    path = case_dir / LOG_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_leaving_add_mode_drops_a_box_half_drawn(review_case):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    detections = CaseReview(str(review_case)).cell("cellA")["detections"]
    with cell_page(review_case, "cellA") as (driver, click_at):

        def pointer(*steps):  # ("down" | "up" | "move", (x, y) on the screen)
            actions = ActionChains(driver)
            for step, at in steps:
                if at is not None:
                    actions.w3c_actions.pointer_action.move_to_location(*at)
                if step == "down":
                    actions.w3c_actions.pointer_action.pointer_down()
                if step == "up":
                    actions.w3c_actions.pointer_action.pointer_up()
            actions.perform()

        def nothing_added_and_a_click_selects(i):
            assert driver.find_element(By.ID, "add-mode").text == "Add a chromosome"
            click_at(*box_centre(detections[i]))  # a plain click on a chromosome
            WebDriverWait(driver, 10).until(lambda d: selected(d) == i)
            time.sleep(1)  # time for a save that should not come
            assert review_log(review_case) == []
            assert driver.find_element(By.ID, "total").text == "46 chromosomes · version 0"
            assert driver.find_elements(By.CSS_SELECTOR, "rect.drawing") == []

        # a drag begun on the empty bottom of the metaphase, released on the page's header
        driver.find_element(By.ID, "add-mode").click()
        header = driver.find_element(By.ID, "case-summary").rect
        pointer(
            ("down", driver.on_screen(440, 215)),
            ("move", driver.on_screen(470, 245)),
            ("up", (int(header["x"]) + 5, int(header["y"]) + 5)),
        )
        assert driver.find_elements(By.CSS_SELECTOR, "rect.drawing") == []  # the drag ended
        ActionChains(driver).send_keys(Keys.ESCAPE).perform()
        nothing_added_and_a_click_selects(5)

        # Esc while the button is still down, released on the metaphase
        driver.find_element(By.ID, "add-mode").click()
        pointer(("down", driver.on_screen(440, 215)), ("move", driver.on_screen(470, 245)))
        ActionChains(driver).send_keys(Keys.ESCAPE).perform()
        assert driver.find_elements(By.CSS_SELECTOR, "rect.drawing") == []
        pointer(("up", driver.on_screen(480, 250)))
        nothing_added_and_a_click_selects(7)


def box_centre(detection):
    x1, y1, x2, y2 = detection["bbox_xyxy"]
    return (x1 + x2) / 2, (y1 + y2) / 2


@pytest.mark.slow
def test_a_click_selects_the_box_there_and_steps_through_overlaps(review_case):
    review = CaseReview(str(review_case))
    # over the grid's boxes 12x30: a large box over boxes 0 and 1, and two boxes sharing a
    # centre (120, 80) over boxes 14 and 15
    for version, box in enumerate(([0, 0, 60, 45], [100, 60, 140, 100], [110, 70, 130, 90])):
        change = {"version": version, "action": "add", "bbox_xyxy": box, "class": "21"}
        review.edit("cellB", change)
    detections = review.cell("cellB")["detections"]
    boxes = [d["bbox_xyxy"] for d in detections]

    def under(x, y):  # the boxes that hold the point
        return {i for i, (x1, y1, x2, y2) in enumerate(boxes) if x1 <= x <= x2 and y1 <= y <= y2}

    with cell_page(review_case, "cellB") as (driver, click_at):
        for i, d in enumerate(detections):
            click_at(510, 250)  # the empty corner: nothing selected
            assert selected(driver) is None
            centre = box_centre(d)
            shared = {j for j in under(*centre) if box_centre(detections[j]) == centre}
            picked = []
            for _ in range(len(under(*centre))):
                click_at(*centre)
                picked.append(selected(driver))
            assert picked[0] == i or picked[0] in shared, (i, picked)
            assert set(picked) == under(*centre), (i, picked)  # every box there, each once
        assert len(under(120, 80)) == 2 and picked == [47, 46]  # the smaller on top


@pytest.mark.slow
def test_a_typed_class_is_saved_once_whole(review_case):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    detections = CaseReview(str(review_case)).cell("cellA")["detections"]
    with cell_page(review_case, "cellA") as (driver, click_at):
        wait = WebDriverWait(driver, 20)
        classes = driver.find_element(By.ID, "class-select")

        def saved(version):
            wait.until(
                lambda d: f"saved (version {version})" in d.find_element(By.ID, "message").text
            )

        for version, (i, keys) in enumerate(
            [
                (0, "16" + Keys.ENTER),
                (2, "x"),
                (4, "2" + Keys.ENTER),
                (6, Keys.ARROW_DOWN + Keys.ENTER),
            ],
            start=1,
        ):
            click_at(*box_centre(detections[i]))
            wait.until(lambda d, i=i: selected(d) == i)
            classes.send_keys(keys)
            saved(version)
        time.sleep(1)  # time for a second save that should not come
        log = review_log(review_case)
        assert [(e["index"], e["from"], e["to"]) for e in log] == [
            (0, "1", "16"),
            (2, "2", "X"),
            (4, "3", "2"),
            (6, "4", "5"),
        ]
        assert [e["version"] for e in log] == [1, 2, 3, 4]
        # a person's name, and back to the model's answer
        click_at(*box_centre(detections[0]))
        wait.until(lambda d: "model: 1 97%" in d.find_element(By.ID, "selected-info").text)
        driver.find_element(By.ID, "to-model").click()
        saved(5)
        assert review_log(review_case)[-1]["action"] == "model"
        label = driver.execute_script(
            "return [...document.querySelectorAll('#metaphase text')]"
            ".find((t) => t.previousSibling.dataset.index === '0').textContent"
        )
        assert label == "1 97%" and driver.find_element(By.ID, "to-model").get_attribute("disabled")


def pointer_drag(driver, start, end, steps=5, hold=None):
    """Press at ``start``, move to ``end`` in a few steps, release (screen points), with a key
    (``hold``, e.g. Keys.SHIFT) held down throughout."""
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver)
    if hold:
        actions.key_down(hold)
    pointer, key = actions.w3c_actions.pointer_action, actions.w3c_actions.key_action

    def then(step):  # one tick of the pointer, the key still held through it
        step()
        key.pause()

    then(lambda: pointer.move_to_location(*map(int, start)))
    then(pointer.pointer_down)
    for k in range(1, steps + 1):
        t = k / steps
        at = int(start[0] + t * (end[0] - start[0])), int(start[1] + t * (end[1] - start[1]))
        then(lambda at=at: pointer.move_to_location(*at))
    then(pointer.pointer_up)
    if hold:
        actions.key_up(hold)
    actions.perform()


def press(driver, *keys):
    """Each key in turn; a tuple is a chord: (Keys.SHIFT, Keys.TAB)."""
    send_keys(driver, keys)


def message(driver):
    return driver.execute_script("return document.getElementById('message').textContent")


def karyogram_selected(driver):
    return driver.execute_script(
        "const r = document.querySelector('#karyogram-map rect.chromosome.selected');"
        "return r ? Number(r.dataset.index) : null;"
    )


@pytest.mark.slow
def test_keys_step_through_chromosomes_and_cells(review_case):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    with cell_page(review_case, "cellA") as (driver, click_at):
        wait = WebDriverWait(driver, 20)
        keys_help = driver.find_element(By.ID, "keys").text
        assert all(k in keys_help for k in ("Tab", "Ctrl+Z", "next cell to review", "uncertain"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#karyogram-map rect.chromosome"))
        # in the karyogram's order (by class), highlighted in both views
        steps = []
        for key in (Keys.TAB, Keys.TAB, (Keys.SHIFT, Keys.TAB), Keys.ARROW_RIGHT, Keys.ARROW_RIGHT):
            press(driver, key)
            steps.append((selected(driver), karyogram_selected(driver)))
        assert steps == [(0, 0), (1, 1), (0, 0), (1, 1), (2, 2)]
        press(driver, Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_LEFT)
        assert selected(driver) == 45  # from the first back round to the last: the Y
        press(driver, "u")
        assert "no uncertain chromosome" in message(driver)
        # a 1 named 2: the 1 left and the three 2s are flagged; U steps through them
        press(driver, Keys.TAB)  # from the Y round to the first 1
        assert selected(driver) == 0
        press(driver, "2", Keys.ENTER)
        wait.until(lambda d: "saved (version 1)" in message(d))
        uncertain = []
        for _ in range(4):
            press(driver, "u")
            uncertain.append(selected(driver))
        assert uncertain == [2, 3, 1, 0]  # karyogram order: the 1, then the 2s, best first

        def on(cell):
            wait.until(lambda d: d.find_element(By.ID, "cell-name").text == cell)

        press(driver, "n")  # the next cell not reviewed
        on("cellB")
        press(driver, "f")  # the next flagged one: cellA, now 46,XY,-1,+2
        on("cellA")
        driver.find_element(By.ID, "mark-reviewed").click()  # marks it and moves on
        on("cellB")
        wait.until(lambda d: "reviewed 1" in d.find_element(By.ID, "case-summary").text)
        press(driver, "n")
        wait.until(lambda d: "no other cell to review" in message(d))
        assert driver.find_element(By.ID, "cell-name").text == "cellB"


@pytest.mark.slow
def test_undo_and_redo_are_changes_on_the_server(review_case):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    review = CaseReview(str(review_case))
    original = review.cell("cellB")["detections"]
    with cell_page(review_case, "cellB") as (driver, click_at):
        wait = WebDriverWait(driver, 20)

        def says(text):
            wait.until(lambda d: text in message(d))

        def on_disk():
            return CaseReview(str(review_case)).cell("cellB")

        click_at(*box_centre(original[44]))  # the Y, named X
        press(driver, "x")
        says("saved (version 1)")
        renamed = on_disk()["detections"]
        click_at(*box_centre(original[0]))
        press(driver, Keys.DELETE)
        says("saved (version 2)")
        undo, redo = (Keys.CONTROL, "z"), (Keys.CONTROL, Keys.SHIFT, "z")
        press(driver, undo)
        says("undone (version 3)")
        assert on_disk()["detections"] == renamed  # the deleted 1 back, the model's answer too
        press(driver, undo)
        says("undone (version 4)")
        assert on_disk()["detections"] == original
        assert driver.find_element(By.ID, "call").text == "45,XY,-21"
        press(driver, redo)
        says("redone (version 5)")
        assert on_disk()["detections"] == renamed
        log = review_log(review_case)
        assert [e["action"] for e in log] == ["class", "delete", "restore", "class", "class"]
        assert [e["version"] for e in log] == [1, 2, 3, 4, 5]

        # marked reviewed, the page moves on; Ctrl+Z goes back and takes the mark off
        driver.find_element(By.ID, "mark-reviewed").click()
        wait.until(lambda d: d.find_element(By.ID, "cell-name").text == "cellA")
        assert on_disk()["reviewed"]
        press(driver, undo)
        says("undone (version 7)")
        assert driver.find_element(By.ID, "cell-name").text == "cellB"
        assert not on_disk()["reviewed"]

        # changed elsewhere since: the undo is refused, nothing written, and said so
        review.edit("cellB", {"version": 7, "action": "class", "index": 3, "class": "7"})
        press(driver, undo)
        says("changed elsewhere")
        assert len(review_log(review_case)) == 8 and on_disk()["version"] == 8
        press(driver, undo)
        says("nothing to undo")


@pytest.mark.slow
def test_the_karyogram_selects_renames_and_swaps(review_case):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    with cell_page(review_case, "cellB") as (driver, click_at):
        wait = WebDriverWait(driver, 20)

        def mapped(version):  # the karyogram's places of the cell at this version
            wait.until(
                lambda d: d.execute_script(
                    "return page.layout && page.layout.version === arguments[0] && "
                    "document.getElementById('karyogram').complete && "
                    "document.querySelectorAll('#karyogram-map rect.chromosome').length"
                    " === page.record.detections.length",
                    version,
                )
            )

        def place(selector, where=(0.5, 0.5)):  # a point of a karyogram rectangle on screen
            r = driver.find_element(By.CSS_SELECTOR, f"#karyogram-map {selector}").rect
            return r["x"] + where[0] * r["width"], r["y"] + where[1] * r["height"]

        def chromosome(i):
            return place(f"rect.chromosome[data-index='{i}']")

        def classes():
            return [d["class"] for d in CaseReview(str(review_case)).cell("cellB")["detections"]]

        mapped(0)
        pointer_drag(driver, chromosome(44), chromosome(44), steps=1)  # a click: selects
        wait.until(lambda d: selected(d) == 44 and karyogram_selected(d) == 44)
        # the Y dragged to X's slot (below its empty place, over the slot's label)
        pointer_drag(driver, chromosome(44), place("rect.slot[data-class='X']", (0.5, 0.9)))
        wait.until(lambda d: d.find_element(By.ID, "call").text == "45,XX,-21")
        assert classes()[44] == "X" and review_log(review_case)[-1]["action"] == "class"
        mapped(1)
        # a 1 dropped on a 2: the two exchange classes in one change
        pointer_drag(driver, chromosome(0), chromosome(2))
        wait.until(lambda d: "saved (version 2)" in message(d))
        assert classes()[:4] == ["2", "1", "1", "2"]
        (swap,) = [e for e in review_log(review_case) if e["action"] == "swap"]
        assert (swap["index"], swap["other"], swap["version"]) == (0, 2, 2)
        mapped(2)
        assert selected(driver) == 0 and karyogram_selected(driver) == 0
        # a drop on nothing changes nothing
        pointer_drag(driver, chromosome(5), (5, 5))
        time.sleep(1)
        assert len(review_log(review_case)) == 2


@pytest.mark.slow
def test_zoom_pan_labels_move_resize_and_split(review_case):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    detections = CaseReview(str(review_case)).cell("cellA")["detections"]
    with cell_page(review_case, "cellA") as (driver, click_at):
        wait = WebDriverWait(driver, 20)

        def view():
            box = driver.execute_script(
                "return document.getElementById('metaphase').getAttribute('viewBox')"
            )
            return [float(v) for v in box.split()]

        def on_screen_size(selector):
            r = driver.find_element(By.CSS_SELECTOR, f"#metaphase {selector}").rect
            return r["width"], r["height"]

        def box_of(i):
            return CaseReview(str(review_case)).cell("cellA")["detections"][i]["bbox_xyxy"]

        label_before = on_screen_size("text[data-index='0']")[1]
        box_before = on_screen_size("rect[data-index='0']")[0]
        assert view() == [0, 0, 520, 260]
        press(driver, "+", "+")  # 1.5 x 1.5
        assert abs(view()[2] - 520 / 2.25) < 0.5
        assert abs(on_screen_size("rect[data-index='0']")[0] / box_before - 2.25) < 0.1
        assert abs(on_screen_size("text[data-index='0']")[1] - label_before) <= 2  # readable
        # pan: drag the background (between the boxes)
        x0, y0 = view()[:2]
        k = view()[2] / driver.find_element(By.ID, "metaphase").rect["width"]
        a = driver.on_screen(276, 145)
        pointer_drag(driver, a, (a[0] - 100, a[1] - 40))
        assert abs(view()[0] - (x0 + 100 * k)) < 2 * k and abs(view()[1] - (y0 + 40 * k)) < 2 * k
        press(driver, "0")
        assert view() == [0, 0, 520, 260]
        # the wheel zooms about the pointer
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

        svg = driver.find_element(By.ID, "metaphase")
        ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(svg), 0, -200).perform()
        wait.until(lambda d: view()[2] < 500)
        press(driver, "0")
        press(driver, "l")
        assert not driver.find_element(By.CSS_SELECTOR, "#metaphase text").is_displayed()
        press(driver, "l")
        assert driver.find_element(By.CSS_SELECTOR, "#metaphase text").is_displayed()
        assert review_log(review_case) == []  # looking changes nothing

        # move box 5 by (20, 10) image pixels: select it, drag its body; one change
        click_at(*box_centre(detections[5]))
        wait.until(lambda d: selected(d) == 5)
        x1, y1, x2, y2 = detections[5]["bbox_xyxy"]
        pointer_drag(driver, driver.on_screen(x1 + 6, y1 + 15), driver.on_screen(x1 + 26, y1 + 25))
        wait.until(lambda d: "saved (version 1)" in message(d))
        moved = box_of(5)
        assert all(abs(a - b) <= 1.5 for a, b in zip(moved, [x1 + 20, y1 + 10, x2 + 20, y2 + 10]))
        assert selected(driver) == 5
        # resize: its bottom-right corner out by (8, 6)
        pointer_drag(
            driver,
            driver.on_screen(moved[2], moved[3]),
            driver.on_screen(moved[2] + 8, moved[3] + 6),
        )
        wait.until(lambda d: "saved (version 2)" in message(d))
        resized = box_of(5)
        assert all(
            abs(a - b) <= 1.5 for a, b in zip(resized, [*moved[:2], moved[2] + 8, moved[3] + 6])
        )
        assert [e["action"] for e in review_log(review_case)] == ["box", "box"]

        # split box 7 (a 4) across its middle: S, then the line; the new part is selected
        click_at(*box_centre(detections[7]))
        wait.until(lambda d: selected(d) == 7)
        x1, y1, x2, y2 = detections[7]["bbox_xyxy"]
        press(driver, "s")
        mid = (y1 + y2) / 2
        pointer_drag(driver, driver.on_screen(x1 - 4, mid), driver.on_screen(x2 + 4, mid))
        wait.until(lambda d: "saved (version 3)" in message(d))
        assert driver.find_element(By.ID, "call").text == "47,XY,+4"
        after = CaseReview(str(review_case)).cell("cellA")["detections"]
        assert len(after) == 47 and selected(driver) == 46
        for part, want in ((after[7], [x1, y1, x2, mid]), (after[46], [x1, mid, x2, y2])):
            assert all(abs(a - b) <= 1 for a, b in zip(part["bbox_xyxy"], want)), part
        assert after[46]["class"] == "4" and after[46]["source"] == "person"
        press(driver, "x")  # the second part named at once
        wait.until(lambda d: d.find_element(By.ID, "call").text == "47,XXY")
        # Shift+drag draws a new box, without the Add button; it is selected: typed, named
        a, b = driver.on_screen(440, 212), driver.on_screen(456, 248)
        pointer_drag(driver, a, b, hold=Keys.SHIFT)
        wait.until(lambda d: "saved (version 5)" in message(d))
        assert selected(driver) == 47
        press(driver, "2", "1")
        wait.until(lambda d: "saved (version 6)" in message(d))
        added = CaseReview(str(review_case)).cell("cellA")["detections"][47]
        assert added["class"] == "21" and abs(added["bbox_xyxy"][0] - 440) <= 1


@pytest.mark.slow
def test_the_benchmark_corrections_stay_within_their_actions(tmp_path):
    from deepacc_d2.studies.review_benchmark import benchmark_case, run_benchmark

    case = benchmark_case(str(tmp_path / "case"))
    rows = run_benchmark(case)
    assert len(rows) == 10
    for r in rows:
        assert r["count"] <= r["limit"], r
    log = review_log(tmp_path / "case")
    assert [e["action"] for e in log] == [
        "class", "class", "swap", "swap", "add", "class", "delete", "box", "split", "reviewed"
    ]  # fmt: skip
    assert (log[0]["from"], log[0]["to"], log[1]["to"]) == ("Y", "X", "Y")
    assert (log[2]["index"], log[2]["other"]) == (0, 2) and log[5]["to"] == "21"
    cell = CaseReview(case).cell("cellB")
    # the 21 added (46,XY), a 3 deleted (box 5), a 5 split in two (box 7, after the deletion)
    assert cell["reviewed"] and cell["total"] == 46 and cell["karyotype"] == "46,XY,-3,+5"
