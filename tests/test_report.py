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
