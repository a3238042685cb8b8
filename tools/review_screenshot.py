#!/usr/bin/env python
"""
A screenshot of the review page on a case, from Debian's headless chromium (the page's own
test browser): the cell chosen, one chromosome selected.

    deepacc karyotype --weights cil-r18-crops --output output/review_demo IMAGES...
    python tools/review_screenshot.py output/review_demo docs/review.png --cell 103184
"""

import argparse

from deepacc_d2.app.review.browser import headless_chromium, missing_browser
from deepacc_d2.app.review.server import serving


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case_dir")
    p.add_argument("out", help="PNG")
    p.add_argument("--cell", default="", help="the cell to show (default: the first)")
    p.add_argument("--select", type=int, default=0, help="the chromosome to select")
    args = p.parse_args()
    if missing_browser():
        raise SystemExit(missing_browser())
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    with serving(args.case_dir) as url, headless_chromium((1500, 860)) as driver:
        driver.get(f"{url}/#{args.cell}")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#metaphase rect.chromosome"))
        wait.until(
            lambda d: d.execute_script("return document.getElementById('karyogram').complete")
        )
        selector = f"#metaphase rect[data-index='{args.select}']"  # drawn largest first
        driver.find_element(By.CSS_SELECTOR, selector).click()
        driver.save_screenshot(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
