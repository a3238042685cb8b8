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

from deepacc_d2.classes import CLASS_NAMES
from deepacc_d2.data.datasets import register_coco_folders
from deepacc_d2.review.browser import headless_chromium, missing_browser
from deepacc_d2.review.server import serving
from deepacc_d2.review.store import LOG_NAME, CaseReview

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
        wait.until(lambda d: "Reviewed" in d.find_element(By.ID, "mark-reviewed").text)
        wait.until(lambda d: "reviewed 1" in d.find_element(By.ID, "case-summary").text)
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
