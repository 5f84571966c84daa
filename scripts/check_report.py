#!/usr/bin/env python3
"""Check a Snakemake HTML report in a real headless browser (Debian's chromium).

    python scripts/check_report.py results/report.html [--out DIR] [--install] [--expect TEXT ...]

The report is a JavaScript application; this opens it in headless Chromium, lets the scripts run,
and checks what they drew, for the landing page and for the first result of each category (every
result with ``--every``), each shown the way a click on it would, through the report's own ``app``:

- the DOM drawn by the scripts (script sources left out) names the report's categories and, for
  the landing page, every ``--expect`` text;
- an HTML result is drawn as an iframe, an image result as an <img>;
- the screenshot of each view is not blank (many distinct colours, not one uniform colour).

Screenshots are written to ``--out`` (one PNG per view), to look at. With ``--install``, a missing
chromium is installed with apt-get (as root). Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--no-first-run",
    "--mute-audio",
]


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def install_browser() -> str:
    """apt-get install chromium (Debian); returns its path."""
    if os.geteuid() != 0:
        raise SystemExit("chromium is missing and installing it needs root: apt-get install chromium")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    start = time.perf_counter()
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    packages = ["chromium", "fonts-liberation"]
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env)
    print(f"installed chromium in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    path = find_browser()
    if path is None:
        raise SystemExit("apt-get installed chromium but no chromium command is on PATH")
    return path


def report_data(page: str, name: str):
    """A JSON block the report embeds as <script id="NAME">...</script> (results, categories)."""
    match = re.search(rf'<script id="{name}">\s*(?:\w+\s*=\s*)?(.*?);?\s*</script>', page, re.S)
    if not match:
        return None
    text = match.group(1).strip().rstrip(";")
    text = re.sub(r"^(?:var|let|const)\s+\w+\s*=\s*", "", text)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def with_view(page: str, result: str | None) -> str:
    """The page with a script that, once loaded, shows ``result`` as a click on it would."""
    if result is None:
        return page
    script = (
        "<script>window.addEventListener('load', function () { setTimeout(function () {"
        f" var key = {json.dumps(result)}; var entry = results[key];"
        " var mime = entry.mime_type || '';"
        " var kind = mime.indexOf('image/') === 0 ? 'img' : (mime === 'text/html' ? 'html' : 'text');"
        " app.showResultInfo(key);"
        " app.setView({content: kind, contentPath: entry.data_uri, resultPath: key});"
        "}, 300); });</script>"
    )
    head, found, tail = page.rpartition("</body>")
    return head + script + found + tail if found else page + script


def run_browser(browser: str, url: str, args: list[str], budget_ms: int, timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="drs-chromium-") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *args, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def drawn_dom(dom: str) -> str:
    """The DOM without script and style contents: what the page's scripts drew."""
    return re.sub(r"<(script|style)\b[^>]*>.*?</\1>", "", dom, flags=re.S | re.I)


def visible_text(dom: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", drawn_dom(dom))))


def screenshot_stats(path: Path) -> tuple[int, float]:
    """Distinct colours and the standard deviation of the pixel values of a PNG."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    flat = pixels.reshape(-1, 3)
    colours = len(np.unique(flat[:: max(1, len(flat) // 200000)], axis=0))
    return colours, float(pixels.std())


def check(
    report: Path,
    out: Path,
    browser: str,
    expect: list[str],
    width: int,
    height: int,
    budget_ms: int,
    every: bool = False,
) -> list[str]:
    """Every problem found (empty: all good); screenshots go to ``out``."""
    page = report.read_text(errors="replace")
    results = report_data(page, "results") or {}
    categories = report_data(page, "categories") or {}
    problems = []
    if not categories:
        problems.append(f"{report}: no categories of results found in the page (no output marked with report()?)")
    out.mkdir(parents=True, exist_ok=True)
    shown = (
        sorted(results)
        if every
        else [paths[0] for _, subcategories in sorted(categories.items()) for paths in list(subcategories.values())[:1]]
    )
    views = [("landing", None)] + [(Path(key).stem, key) for key in shown if key in results]
    with tempfile.TemporaryDirectory(prefix="drs-report-check-") as tmp:
        for name, key in views:
            view_page = Path(tmp) / f"{name}.html"
            view_page.write_text(with_view(page, key))
            url = view_page.resolve().as_uri()
            started = time.perf_counter()
            shot = out / f"{name}.png"
            shot.unlink(missing_ok=True)
            size = f"--window-size={width},{height}"
            dom = run_browser(browser, url, ["--dump-dom", f"--screenshot={shot}", size], budget_ms, timeout=180)
            if dom.returncode != 0 or not dom.stdout.strip():
                problems.append(
                    f"{name}: chromium --dump-dom failed (exit {dom.returncode}): {dom.stderr.strip()[-500:]}"
                )
                continue
            text = visible_text(dom.stdout)
            drawn = drawn_dom(dom.stdout)
            if "Please enable Javascript" in text and not any(c in text for c in categories):
                problems.append(f"{name}: the report's scripts did not run (only the no-JavaScript notice is drawn)")
            for category in categories:
                if category not in text:
                    problems.append(f"{name}: category {category!r} is not drawn in the menu")
            if key is None:
                for wanted in expect:
                    if wanted not in text:
                        problems.append(f"{name}: text {wanted!r} not drawn on the page")
            else:
                mime = results[key].get("mime_type", "")
                tag = "<img" if mime.startswith("image/") else "<iframe" if mime == "text/html" else None
                if tag and not re.search(rf'{tag}\b[^>]*src="data:', drawn):
                    problems.append(f"{name}: {key} ({mime}) is not drawn (no {tag} with its data)")
            if not shot.exists():
                problems.append(f"{name}: chromium wrote no screenshot: {dom.stderr.strip()[-500:]}")
                continue
            colours, spread = screenshot_stats(shot)
            if colours < 16 or spread < 5:
                problems.append(f"{name}: screenshot {shot} is blank ({colours} colours, pixel spread {spread:.1f})")
            print(f"{name}: {shot} ({colours} colours, {time.perf_counter() - started:.1f} s)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path, help="the HTML report (snakemake --report FILE.html)")
    parser.add_argument("--out", type=Path, help="folder for the screenshots (default: <report>-screenshots)")
    parser.add_argument("--install", action="store_true", help="apt-get install chromium when missing")
    parser.add_argument("--expect", nargs="*", default=[], help="texts the landing page must show")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--budget-ms", type=int, default=3000, help="virtual time the page's scripts get (ms)")
    parser.add_argument("--every", action="store_true", help="show every result (default: the first of each category)")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"{args.report}: report not found; make it with snakemake --report {args.report}", file=sys.stderr)
        return 1
    browser = find_browser() or (install_browser() if args.install else None)
    if browser is None:
        print("no chromium found; install it (apt-get install chromium) or pass --install", file=sys.stderr)
        return 1
    out = args.out or args.report.with_name(args.report.stem + "-screenshots")
    start = time.perf_counter()
    problems = check(args.report, out, browser, args.expect, args.width, args.height, args.budget_ms, args.every)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    status = "FAILED" if problems else "ok"
    print(f"{args.report}: {status} in {time.perf_counter() - start:.1f} s; screenshots in {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
