"""
The review page in a real headless browser (Debian's chromium through Selenium): open a case,
change a class, delete a box, draw a missed one, see the call follow each change, reload and
find the changes kept, mark the cell reviewed, and load the page's COCO export as a
detectron2 dataset with the corrected labels.
"""

import json
import urllib.request

import pytest
from conftest import normal

from deepacc_d2.classes import CLASS_NAMES
from deepacc_d2.data.datasets import register_coco_folders
from deepacc_d2.review.browser import headless_chromium, missing_browser
from deepacc_d2.review.server import serving

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

        def call_is(text):
            wait.until(lambda d: d.find_element(By.ID, "call").text == text)

        driver.get(url)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cells button")) == 2)
        driver.find_element(By.CSS_SELECTOR, "#cells button[data-cell='cellB']").click()
        call_is("45,XY,-21")
        assert len(boxes()) == 45

        # change a class: the Y (chromosome 44) is an X
        boxes()[44].click()
        Select(driver.find_element(By.ID, "class-select")).select_by_value("X")
        call_is("45,XX,-21")

        # delete a box: chromosome 0, a 1
        boxes()[0].click()
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
        added = boxes()[-1]
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
