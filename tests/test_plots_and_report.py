"""`tel plot` (matplotlib) and `tel report` (one offline HTML page), the page opened in a
real headless browser."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tel_core.analysis.compare import compare
from tel_core.analysis.report import build_report
from tel_core.analysis.runs import find_runs
from tel_core.cli import main

from .analysis_runs import write_run

ROPE = {"model": {"positional": {"name": "rope"}}}


@pytest.fixture
def family(tmp_path) -> Path:
    """Two arms of two seeds, with samples, a probe's scalars and a probe's image."""
    root = tmp_path / "family"
    for name, config, base in (("learned", None, 1.5), ("rope", ROPE, 1.3)):
        for seed in (1, 2):
            run = write_run(
                root / name / f"seed-{seed}",
                base + 0.01 * seed,
                seed=seed,
                config=config,
                samples=f"def {name}_{seed}(): pass",
            )
            with open(run / "metrics.jsonl", "a") as f:
                for step in (2, 4):
                    f.write(json.dumps({"step": step, "attn/entropy/layer0": 1.0 + step}) + "\n")
    import matplotlib.pyplot as plt

    image = root / "rope" / "seed-1" / "probes" / "attention" / "heatmap-step4.png"
    image.parent.mkdir(parents=True)
    plt.imsave(image, [[0.0, 1.0], [1.0, 0.0]])
    return root


@pytest.fixture
def lr_grid(tmp_path) -> Path:
    root = tmp_path / "grid"
    for lr, loss in ((1e-3, 1.6), (3e-3, 1.4), (1e-2, 1.5)):
        for batch in (8, 16):
            for seed in (1, 2):
                config = {"optimizer": {"lr": lr}, "train": {"batch_size": batch}}
                write_run(
                    root / f"{lr}-{batch}" / f"s{seed}",
                    loss + 0.01 * seed,
                    seed=seed,
                    config=config,
                )
    return root


def test_tel_plot_draws_every_panel_and_the_learning_rate_plot(tmp_path, lr_grid, capsys):
    out = tmp_path / "curves.png"
    assert main(["plot", str(lr_grid), "-o", str(out), "--x", "tokens"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    said = capsys.readouterr().out
    for panel in ("train/loss", "val/loss", "train/lr", "train/tokens_per_s", "train/grad_norm"):
        assert panel in said
    assert "val/loss against optimizer.lr" in said
    svg = tmp_path / "val.svg"
    assert main(["plot", str(lr_grid), "-o", str(svg), "--y", "val/loss", "--x", "flops"]) == 0
    assert svg.read_text().lstrip().startswith("<?xml")


def test_tel_plot_errors_are_one_line(tmp_path, family, capsys):
    assert main(["plot", str(family), "-o", str(tmp_path / "x.jpg")]) == 2
    assert "expected a file ending in .png, .svg, .pdf" in capsys.readouterr().err
    assert main(["plot", str(family), "-o", str(tmp_path / "x.png"), "--y", "no/such"]) == 2
    assert "none of these metrics is in the runs" in capsys.readouterr().err


def test_the_report_is_one_self_contained_page(tmp_path, family):
    out = tmp_path / "report.html"
    assert main(["report", str(family), "-o", str(out)]) == 0
    page = out.read_text()
    # Opens offline: no script is fetched, plotly's is in the page.
    assert not re.findall(r"<script[^>]*\bsrc=", page) and "<link" not in page
    assert "plotly.js v" in page
    assert page.count("Plotly.newPlot") == 6  # 5 curves and 1 probe
    assert "Config diff" in page and "model.positional.name" in page
    assert "def rope_1(): pass" in page and "def learned_2(): pass" in page
    assert "attn/entropy/layer0" in page
    assert "data:image/png;base64," in page and "heatmap-step4.png" in page
    assert "Every run has finished." in page and "http-equiv='refresh'" not in page


def test_a_report_on_runs_still_training_says_so_and_reloads_when_watched(tmp_path):
    write_run(tmp_path / "a", 1.2)
    write_run(tmp_path / "b", 1.2, config=ROPE, steps=2)
    c = compare(find_runs([tmp_path / "a", tmp_path / "b"]))
    page = build_report(c)
    assert "1 run(s) still training or stopped" in page and "http-equiv" not in page
    assert "<meta http-equiv='refresh' content='5'>" in build_report(c, refresh_s=5)


def _browser():
    """A headless Chromium through selenium, or the reason there is none."""
    chromium = next(
        (
            shutil.which(n)
            for n in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(n)
        ),
        None,
    )
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        return None, (
            "headless Chromium not found (install the Debian packages chromium and "
            "chromium-driver: apt-get install -y chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options), None


def test_the_report_renders_in_a_real_browser_without_a_script_error(tmp_path, family, lr_grid):
    out = tmp_path / "report.html"
    assert main(["report", str(family), str(lr_grid), "-o", str(out)]) == 0
    browser, reason = _browser()
    if browser is None:
        if os.environ.get("TEL_REQUIRE_BROWSER"):  # CI: .ci/run installs Chromium
            pytest.fail(f"TEL_REQUIRE_BROWSER is set, but {reason}")
        pytest.skip(reason)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        browser.get(out.as_uri())
        expected = out.read_text().count("Plotly.newPlot")
        WebDriverWait(browser, 60).until(
            lambda b: (
                b.execute_script(
                    "return document.querySelectorAll('.js-plotly-plot .main-svg').length"
                )
                >= expected
            )
        )
        plots = browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
        assert len(plots) == expected
        for plot in plots:  # every plot drew its lines
            assert plot.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace")
        # The x-axis buttons restyle the curves in place.
        browser.find_elements(By.CSS_SELECTOR, ".updatemenu-button")[1].click()
        title = browser.find_elements(By.CSS_SELECTOR, ".xtitle")[0].text
        assert title == "tokens"
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()


def test_watching_finished_runs_writes_the_page_once_and_returns(tmp_path, family, capsys):
    out = tmp_path / "watched.html"
    assert main(["report", str(family), "-o", str(out), "--watch", "3600"]) == 0
    assert "http-equiv='refresh'" not in out.read_text()
    assert capsys.readouterr().out.count("wrote ") == 1
