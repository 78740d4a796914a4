"""report.html and report.md from a hand-written run folder; the HTML is loaded in headless Chromium."""

import base64
import json
import re
from html.parser import HTMLParser

import pytest
from browser import render
from runfolder import make_run

from psilm.report import write_report
from psilm.shell.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("report"))
    write_report(run)
    return run


@pytest.fixture(scope="module")
def page(run_dir) -> str:
    return (run_dir / "report.html").read_text(encoding="utf-8")


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_html_is_self_contained(page):
    assert page.startswith("<!DOCTYPE html>")
    parser = Tags()
    parser.feed(page)
    names = {tag for tag, _ in parser.tags}
    assert not names & {"script", "link", "iframe", "object", "embed", "a"}, names
    links = [v for _, attrs in parser.tags for k, v in attrs.items() if k in ("src", "href")]
    assert len(links) == 3 and all(v.startswith("data:image/png;base64,") for v in links)
    assert "@import" not in page and "url(" not in page


def test_plots_are_embedded_pngs(page):
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)">', page)
    assert [alt for alt, _ in images] == [
        "accuracy per arm",
        "accuracy against CO2 per arm",
        "CO2 and tokens per stage",
    ]
    for _, b64 in images:
        assert base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")


def test_every_text_is_escaped(page):
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;img src=x onerror=alert(0)&gt;" in page


def test_html_shows_arms_ledger_principles_filters_and_samples(page):
    for text in [
        "Arms",
        "70.0%",  # psi accuracy
        "60.0% - 79.0%",  # its interval
        "Ledger per stage",
        "generate/psi",
        "generator 36,000",
        "student 50,000",
        "$0.0400",
        'class="est"',  # the remote teacher's energy is marked estimated
        "task level (1)",
        "category level (2)",
        "error level (1)",
        "shown in 6 of 6 psi prompts",  # the task and category levels
        "shown in 0 of 6 psi prompts",  # the error level
        "near_duplicate 1",
        "filters dropped a lot",
        "Sample generated instances",
        "Praise one thing.",  # a sample shows the text of its principles
        "dropped by the filters",
        "PSI saves",
        "projected",
    ]:
        assert text in page, text


def test_markdown_report(run_dir):
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# psilm report: fixture")
    assert re.search(r"^\| psi \| 70\.0% \| 60\.0% - 79\.0% \|", md, re.M)
    assert "(estimated)" in md and "| $ |" in md
    assert "## Principles" in md and "## Filters" in md and "## Sample generated instances" in md
    assert "task: shown in 6 of 6 psi prompts; category: shown in 6 of 6 psi prompts; " in md
    assert "error: shown in 0 of 6 psi prompts" in md
    assert "<script" not in md and "<img" not in md


def test_report_of_an_unfinished_run(tmp_path):
    run = make_run(tmp_path)
    (run / "metrics.json").unlink()
    for f in (run / "arms").glob("*/metrics.json"):
        f.unlink()
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["train/psi"] = {"status": "running", "key": "k"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    html_path, md_path = write_report(run)
    assert "not evaluated" in html_path.read_text() and "running" in md_path.read_text()


def test_cli_report_prints_both_paths(run_dir, capsys):
    assert main(["report", "--run", str(run_dir)]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(run_dir / "report.html"), str(run_dir / "report.md")]


def test_cli_report_on_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["report", "--run", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


# --- in a browser -----------------------------------------------------------------------------
PROBE = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) img.setAttribute("data-natural-width", img.naturalWidth);
  document.body.setAttribute("data-probed", document.images.length);
});
</script></body>"""


def test_chromium_renders_the_plots(run_dir, tmp_path):
    probed = tmp_path / "probed.html"  # the report itself has no script: the test adds one
    probed.write_text((run_dir / "report.html").read_text().replace("</body>", PROBE), encoding="utf-8")
    dom = render(probed, dump_dom=True)
    assert 'data-probed="3"' in dom
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == 3 and all(w > 300 for w in widths), widths
    assert dom.count("<script") == 1 and "&lt;b&gt;bold&lt;/b&gt;" in dom  # generated HTML stays text


def test_chromium_screenshot_is_not_blank(run_dir, tmp_path):
    from PIL import Image, ImageStat

    shot = tmp_path / "shot.png"
    render(run_dir / "report.html", screenshot=shot, size=(1280, 1600))
    img = Image.open(shot).convert("L")
    assert img.size == (1280, 1600)
    lo, hi = img.getextrema()
    assert hi - lo > 100 and ImageStat.Stat(img).stddev[0] > 10  # text and plots, not one colour


def test_per_label_table_and_an_arm_that_answers_one_label(tmp_path):
    run = make_run(tmp_path, ["direct", "psi"])
    for arm, per in {
        "direct": {"positive": {"accuracy": 0.96, "n": 25, "predicted": 90},  # near every row 'positive'
                   "negative": {"accuracy": 0.12, "n": 75, "predicted": 10}},
        "psi": {"positive": {"accuracy": 0.8, "n": 25, "predicted": 30},
                "negative": {"accuracy": 0.7, "n": 75, "predicted": 70}},
    }.items():  # fmt: skip
        path = run / "arms" / arm / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "per_class": per}))
    write_report(run)
    md = (run / "report.md").read_text()
    assert "| label | test rows | direct | psi |" in md
    assert "| positive | 25 | 96.0% (90) | 80.0% (30) |" in md
    line = "direct answers 'positive' for 90.0% of the test rows, where 25.0% are 'positive'"
    assert f"WARNING: {line}" in md and "psi answers" not in md  # psi's shares follow the test's
    page = (run / "report.html").read_text()
    assert "<h3>Per label</h3>" in page and line.replace("'", "&#x27;") in page


def test_the_console_names_an_arm_that_answers_one_label(capsys):
    from psilm.shell.cli import _warn_skew

    per = {"a": {"accuracy": 1.0, "n": 20, "predicted": 70},
           "b": {"accuracy": 0.0, "n": 80, "predicted": 30}}  # fmt: skip
    even = {"a": {"accuracy": 0.9, "n": 20, "predicted": 22},
            "b": {"accuracy": 0.9, "n": 80, "predicted": 78}}  # fmt: skip
    arm = {"accuracy": 0.2, "n": 100, "ci95": [0.1, 0.3]}
    _warn_skew(
        {
            "task": "t",
            "n_test": 100,
            "arms": {
                "direct": {**arm, "per_class": per},
                "psi": {**arm, "per_class": even},
                "zero_shot": arm,
            },
        }
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["WARNING (evaluate): direct answers 'a' for 70.0% of the test rows, where 20.0% are 'a': "
                   "its accuracy follows that one label more than the task"]  # fmt: skip
