"""
The review page in a real headless browser, for its tests and its screenshot: Debian's
``chromium`` driven through ``chromium-driver`` by Selenium (``pip install selenium``).
Nothing here downloads a browser.
"""

import shutil
import tempfile
from contextlib import contextmanager
from typing import Optional, Sequence, Tuple

# Flags of a headless Chromium on a machine with no network beyond this one.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def missing_browser() -> Optional[str]:
    """Why the page cannot be driven here, or None when it can."""
    for program, package in (("chromium", "chromium"), ("chromedriver", "chromium-driver")):
        if shutil.which(program) is None:
            return f"{program} not found: install Debian's {package} (make test does, as root)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


@contextmanager
def headless_chromium(window: Tuple[int, int] = (1600, 900)):
    """A Selenium WebDriver of Debian's chromium, headless, in a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in CHROMIUM_FLAGS + (f"--user-data-dir={profile}",):
            options.add_argument(flag)
        options.add_argument(f"--window-size={window[0]},{window[1]}")
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        try:
            yield driver
        finally:
            driver.quit()


def send_keys(driver, keys: Sequence, duration: int = 250):
    """Each key in turn, as one action chain; a tuple is a chord: (Keys.SHIFT, Keys.TAB).

    Args:
        duration (int): milliseconds a pointer move of the chain takes (Selenium's default).
    """
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver, duration=duration)
    for key in keys:
        if isinstance(key, tuple):
            *modifiers, last = key
            for m in modifiers:
                actions.key_down(m)
            actions.send_keys(last)
            for m in reversed(modifiers):
                actions.key_up(m)
        else:
            actions.send_keys(key)
    actions.perform()
