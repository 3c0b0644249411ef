"""``report.html``: one self-contained page (figures as base64), rendered by a real headless browser.

The browser check needs Debian's ``chromium`` at ``/usr/bin/chromium`` (``apt-get install chromium``) and skips
without it. A probe script, added to a copy of the page, records script errors and ``console.error`` calls and,
once the page has loaded, writes the table count, the first table's headers and each image's decoded width
into the DOM that ``chromium --dump-dom`` prints.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.audit.test_audit import _two_group_cohort

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="the headless-browser check of report.html needs Debian's chromium at /usr/bin/chromium "
    "(apt-get install chromium)",
)

PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push("error: " + (e.message || e.target.src || "resource")), true);
const __consoleError = console.error;
console.error = (...args) => { window.__errors.push("console.error: " + args.join(" ")); __consoleError(...args); };
</script>"""
PROBE_BODY = """<script>
window.addEventListener("load", () => {
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    tables: document.querySelectorAll("table").length,
    headers: [...document.querySelectorAll("table")[0]?.querySelectorAll("th") ?? []].map((th) => th.textContent),
    images: [...document.images].map((img) => ({alt: img.alt, width: img.naturalWidth, complete: img.complete})),
    errors: window.__errors,
  });
  document.body.appendChild(probe);
});
</script>"""


def render(page: Path, tmp_path: Path) -> dict:
    """Load a copy of ``page`` with the probe in headless chromium; return what the probe recorded."""
    text = page.read_text()
    probed = text.replace("<head>", "<head>\n" + PROBE_HEAD, 1).replace("</body>", PROBE_BODY + "\n</body>", 1)
    copy = tmp_path / f"probe_{page.name}"
    copy.write_text(probed)
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        + ["--virtual-time-budget=10000", "--dump-dom", copy.as_uri()],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"the probe did not run; chromium said:\n{result.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(match.group(1)))


def test_html_report_is_self_contained(tmp_path):
    from common.audit import run_audit

    out = tmp_path / "out"
    run_audit(_two_group_cohort(tmp_path), out, ["group"], progress=False, min_group_size=4, n_resamples=200)
    page = (out / "report.html").read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<table>" in page and "<th>volume bias [95% CI]</th>" in page
    assert not re.search(r'(href|src)="(?!data:|#)', page)  # nothing outside the file


@needs_chromium
def test_html_report_renders_in_headless_chromium(tmp_path):
    from common.audit import run_audit

    out = tmp_path / "out"
    run_audit(_two_group_cohort(tmp_path), out, ["group"], progress=False, min_group_size=4, n_resamples=200)
    seen = render(out / "report.html", tmp_path)
    assert seen["errors"] == []
    assert seen["tables"] == 3  # by group, disparity, AUC
    assert seen["headers"][:5] == ["group", "structure", "n", "labelled", "Dice"]
    assert [img["alt"] for img in seen["images"]] == ["Volume bias by group", "Dice by group"]
    assert all(img["complete"] and img["width"] > 100 for img in seen["images"])


@needs_chromium
def test_probe_catches_a_broken_page(tmp_path):
    """The check above can fail: a script error, a console error and an undecodable image are all seen."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><table><tr><th>x</th></tr></table>'
        '<img alt="bad" src="data:image/png;base64,AAAA"><script>console.error("boom"); undefinedCall();</script>'
        "</body></html>"
    )
    seen = render(page, tmp_path)
    assert seen["images"] == [{"alt": "bad", "width": 0, "complete": True}]
    assert "console.error: boom" in seen["errors"]
    assert any("undefinedCall" in e for e in seen["errors"])
