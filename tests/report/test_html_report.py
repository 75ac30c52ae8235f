"""``netinvert report``: one self-contained HTML page over real run folders, checked as text and in a browser.

The runs are the real thing at test-sized budgets (a classifier, its inversion, an OOD run and its evaluation,
a BNN with preimage, sampling and counting queries), so the page is tested on what the commands write, not
on a hand-made imitation; two hand-made cards cover what no quick run produces (a history with no picture of
its own, an unknown kind). The browser half loads the page in Debian's headless Chromium at phone and desktop
widths; it skips, saying why, where no Chromium, chromedriver or selenium is installed (``.ci/run`` installs
them). Screenshots are kept under pytest's tmp path and copied to ``$NETINVERT_TEST_ARTEFACTS`` when it is set.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from netinvert.cli import main
from netinvert.exceptions import RunExistsError, RunFormatError
from netinvert.report import render_html_report, write_html_report

THREADS = {"device": "cpu", "threads": 1}


# --------------------------------------------------------------------------- runs at test-sized budgets


@pytest.fixture(scope="module")
def runs(digits_cnn_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One run of each quick kind, written by the pipelines the CLI calls."""
    from netinvert.apps.ood import OODRunConfig, run_ood, run_ood_evaluation
    from netinvert.bnn import BNNRunConfig, run_bnn_query, run_bnn_training
    from netinvert.inversion import InversionRunConfig, run_inversion

    root = tmp_path_factory.mktemp("report_runs")
    inv = root / "inversion"
    run_inversion(InversionRunConfig(classifier=digits_cnn_run, steps=40, n_per_class=8, verifier_epochs=1, **THREADS), inv,
                  progress=False)
    ood = root / "ood"
    run_ood(OODRunConfig(dataset="digits", model="mlp", model_params={"hidden": [16]}, base_epochs=1, rounds=1, steps=3,
                         samples_per_round=20, noise_uniform=16, noise_gaussian=16, epochs_per_round=1,
                         inverter_batch_size=22, verifier_epochs=1, **THREADS), ood, progress=False)
    run_ood_evaluation(ood, ["uniform"], root / "ood_eval", n=64, **THREADS)
    bnn = root / "bnn"
    run_bnn_training(BNNRunConfig(dataset="digits", hidden=(8,), epochs=2, threads=1), bnn, progress=False)
    run_bnn_query("enumerate", bnn, {"label": 3, "n": 4, "threads": 1, "progress": False}, root / "bnn_enumerate")
    run_bnn_query("sample", bnn, {"label": 1, "n": 6, "threads": 1, "progress": False}, root / "bnn_sample")
    run_bnn_query("count", bnn, {"label": 3, "method": "sampled", "n": 4000, "threads": 1, "progress": False},
                  root / "bnn_count")
    return {"classifier": digits_cnn_run, "inversion": inv, "ood": ood, "ood_eval": root / "ood_eval", "bnn": bnn,
            "bnn_enumerate": root / "bnn_enumerate", "bnn_sample": root / "bnn_sample", "bnn_count": root / "bnn_count"}


@pytest.fixture(scope="module")
def report(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = write_html_report(list(runs.values()), out)
    assert result.path == out.absolute() and result.n_bytes == out.stat().st_size
    assert result.kinds == ("classifier", "inverter", "ood", "ood-evaluation", "bnn", "bnn-query", "bnn-query", "bnn-query")
    return out


class _Page(HTMLParser):
    """Every tag's attributes, and the text of each section by its anchor."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _section(text: str, kind: str, nth: int = 0) -> str:
    """The HTML of the ``nth`` top-level section of ``kind``."""
    match = list(re.finditer(f'data-kind="{re.escape(kind)}" data-depth="0"', text))[nth]
    end = text.find('data-depth="0"', match.end())
    return text[match.start():end if end > 0 else len(text)]


# --------------------------------------------------------------------------- the page as text


def test_every_picture_is_inlined_and_nothing_is_fetched(report: Path, runs: dict[str, Path]) -> None:
    from PIL import Image

    text = report.read_text()
    page = _parse(text)
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    pngs = [p for run in runs.values() for p in run.rglob("*.png")]
    assert len(images) > len(pngs) >= 7  # every PNG a run wrote, plus pictures drawn for the page
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,"), src[:60]
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(png)) as img:
            img.verify()  # a whole, valid PNG
        assert attrs.get("alt")
    # nothing outside the file: no scripts, stylesheets, frames or fonts, and no link leaves the page
    assert not [tag for tag, _ in page.tags if tag in ("script", "link", "iframe", "object", "embed")]
    for tag, attrs in page.tags:
        for name in ("src", "href", "srcset", "poster", "data"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), (tag, name, value[:80])
    assert not re.search(r"https?://|url\(|@import|//cdn", text)


def test_each_kind_shows_its_numbers_pictures_and_config(report: Path, runs: dict[str, Path]) -> None:
    text = report.read_text()
    # the index links to each run's section, and each anchor exists
    links = [attrs["href"] for tag, attrs in _parse(text).tags if tag == "a" and (attrs.get("href") or "").startswith("#run-")]
    assert links == [f"#run-{i}" for i in range(1, len(runs) + 1)]
    assert all(f'id="{link[1:]}"' in text for link in links)

    metrics = json.loads((runs["inversion"] / "metrics.json").read_text())
    inversion = _section(text, "inverter")
    assert f"{metrics['validity']:.4g}" in inversion and "Per-class gallery" in inversion and "Loss curves" in inversion
    assert "Training curves drawn" not in inversion  # the run has losses.png: nothing is redrawn
    assert "Metrics: per class" in inversion and "Configuration" in inversion

    classifier = _section(text, "classifier")
    card = json.loads((runs["classifier"] / "card.json").read_text())
    assert f"{card['test_accuracy']:.4g}" in classifier

    ood = _section(text, "ood")
    assert "garbage class" in ood and "round_01.png" in ood
    assert "Training history" in ood  # one row per round
    evaluation = _section(text, "ood-evaluation")
    assert "OOD histograms" in evaluation and "ROC curves" in evaluation and "AUROC" in evaluation

    bnn = _section(text, "bnn")
    assert "(omitted: see card.json)" in bnn and "[[" not in bnn  # the exported net's literals are not dumped into the page
    assert "Training curves drawn from the run&#39;s history, per epoch" in bnn  # its card's history has no picture


def test_bnn_queries_show_preimages_heat_maps_and_counts_with_intervals(report: Path, runs: dict[str, Path]) -> None:
    text = report.read_text()
    enumerate_, sample, count = (_section(text, "bnn-query", i) for i in range(3))
    assert "Preimages the solver found" in enumerate_ and "label 3 (4 of 4)" in enumerate_
    assert "Marginal heat map" in sample and "marginals_label1.png" in sample and "label 1 (6 of 6)" in sample
    result = json.loads((runs["bnn_count"] / "card.json").read_text())["result"]
    n = result["n_inputs"]
    assert "Preimage count" in count and "Wilson interval" in count
    low, high = f"{result['low'] * 2.0 ** n:.3e}", f"{result['high'] * 2.0 ** n:.3e}"
    assert f"[{low}, {high}]" in count and float(low) < result["count"] < float(high)


def test_history_without_a_picture_is_drawn_and_an_unknown_kind_still_shows(tmp_path: Path) -> None:
    run = tmp_path / "adv"
    run.mkdir()
    (run / "card.json").write_text(json.dumps({"kind": "adversarial-generator", "config": {"eps": 0.1},
                                               "test_success": 0.5}))
    (run / "history.json").write_text(json.dumps({"step": list(range(1, 301)), "loss": [1 / s for s in range(1, 301)],
                                                  "success": [s / 300 for s in range(1, 301)]}))
    other = tmp_path / "future"
    other.mkdir()
    (other / "card.json").write_text(json.dumps({"kind": "something-new", "answer": 42, "metrics": {"score": 0.25}}))
    text = render_html_report([run, other])
    adv = _section(text, "adversarial-generator")
    assert "Training curves drawn from the run&#39;s history, per step (grey: every step; blue: moving average of 6)" in adv
    assert adv.count("<img ") == 1 and "test success" in adv
    new = _section(text, "something-new")
    assert "Something new" in new and "0.25" in new and "42" in new


def test_a_folder_that_is_not_a_run_is_refused_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          digits_cnn_run: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "r.html"
    with pytest.raises(RunFormatError, match=f"{re.escape(str(empty))} is not a run folder: it has no card.json"):
        write_html_report([digits_cnn_run, empty], out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_html_report([tmp_path / "nowhere"], out)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "card.json").write_text("{not json")
    with pytest.raises(RunFormatError, match="is not valid JSON"):
        write_html_report([tmp_path / "broken"], out)
    assert not out.exists()
    assert main(["report", str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netinvert: error:") and "empty is not a run folder" in err and "Traceback" not in err


def test_out_is_refused_inside_a_run_or_over_a_file_without_force(tmp_path: Path, digits_cnn_run: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="never writes into a run"):
        write_html_report([digits_cnn_run], digits_cnn_run / "report.html")
    assert not (digits_cnn_run / "report.html").exists()
    with pytest.raises(RunExistsError, match="is a folder"):
        write_html_report([digits_cnn_run], tmp_path)
    out = tmp_path / "r.html"
    out.write_text("old")
    with pytest.raises(RunExistsError, match="--force"):
        write_html_report([digits_cnn_run], out)
    assert out.read_text() == "old"
    assert main(["report", str(digits_cnn_run), "--out", str(out), "--force", "--title", "my <run>"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["kinds"] == ["classifier"] and printed["path"] == str(out.absolute())
    text = out.read_text()
    assert "<title>my &lt;run&gt;</title>" in text and 'id="index"' not in text  # escaped; one run needs no index


@pytest.mark.slow
def test_demo_writes_report_html_next_to_report_md(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seconds", "2", "--bnn-preimages", "2", "--device", "cpu", "--threads", "1",
                 "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["html_report"] == str(out / "report.html") and (out / "report.md").is_file()
    text = (out / "report.html").read_text()
    assert f"<code>{out}</code>" in text  # the page names the folder, not the one it was staged in
    assert f"<code>{out.parent / ('.' + out.name)}" not in text
    for kind in ("demo", "classifier", "inverter", "bnn"):
        assert f'data-kind="{kind}"' in text
    assert "BNN preimages found per label" in text and "report.html" in (out / "report.md").read_text()
    images = re.findall(r'<img [^>]*src="([^"]*)"', text)
    assert len(images) >= 3 and all(src.startswith("data:image/png;base64,") for src in images)


# --------------------------------------------------------------------------- the page in a browser


def _browser():
    """A headless Chromium driven by selenium, or a skip that says what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver; .ci/run does)")
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--window-size=1366,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


_IMAGES_JS = """return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.getBoundingClientRect().width]);"""
_OVERFLOW_JS = """return [document.documentElement.scrollWidth, document.documentElement.clientWidth,
                          Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right >
                          document.documentElement.clientWidth + 1 && !e.closest('.scroll')).map(e => e.tagName + '.' +
                          e.className).slice(0, 5)];"""


def _artefacts(tmp_path: Path) -> list[Path]:
    folders = [tmp_path / "screenshots"]
    if os.environ.get("NETINVERT_TEST_ARTEFACTS"):
        folders.append(Path(os.environ["NETINVERT_TEST_ARTEFACTS"]))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


@pytest.mark.parametrize("width,height,name", [(390, 844, "phone"), (1366, 900, "desktop")])
def test_report_renders_in_chromium(report: Path, tmp_path: Path, width: int, height: int, name: str) -> None:
    """Every image decodes, the console stays clean and nothing spills sideways; a full-page screenshot is kept."""
    driver = _browser()
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": name == "phone"})
        driver.get(report.absolute().as_uri())
        deadline = time.monotonic() + 20
        while driver.execute_script("return document.readyState") != "complete" and time.monotonic() < deadline:
            time.sleep(0.1)
        images = driver.execute_script(_IMAGES_JS)
        assert len(images) > 10
        assert [i for i in images if not (i[1] and i[2] > 0)] == []  # loaded and decoded
        assert all(0 < i[3] <= width for i in images)  # laid out, and no wider than the screen
        scroll_width, client_width, spilling = driver.execute_script(_OVERFLOW_JS)
        assert client_width == width and scroll_width <= client_width, spilling  # no sideways scrolling on a phone
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        # the folded parts (configuration of sub-runs, card details) open without spilling either
        driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
        scroll_width, client_width, spilling = driver.execute_script(_OVERFLOW_JS)
        assert scroll_width <= client_width, spilling
        assert all(i[1] and i[2] > 0 for i in driver.execute_script(_IMAGES_JS))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
        assert errors == []
    finally:
        driver.quit()
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG")
    for folder in _artefacts(tmp_path):
        (folder / f"report_{name}.png").write_bytes(png)
