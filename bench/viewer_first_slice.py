"""Time to the first slice of a series in the viewer, against loading every slice before showing.

    .venv/bin/python bench/viewer_first_slice.py [--slices 200] [--size 256] [--rounds 5] [--mbps 0]

A synthetic CT series (``synth_series``: ``--slices`` single-frame slices of ``--size``² 16-bit
pixels) is served on 127.0.0.1 with the viewer build (``make viewer`` first); Debian's Chromium
(headless, Playwright) mounts the viewer's series form on a bare page, in a fresh browser context
each time (no cache; the server sends ``no-store``). Two ways, interleaved round by round (the order
alternating) so both see the same machine:

* ``ours``: ``mount({slices})`` with the slices' URLs: the mount resolves when slice 1 is on screen;
  the others load in the background (the viewer's prefetch, nearest first).
* ``naive``: what a viewer that loads everything before showing does: the page downloads every slice
  (the browser's 6 connections per host), then mounts the same viewer on the downloaded bytes
  (``blob:`` URLs), so its first slice shows only after the whole series is in.

Per run: ``first`` (ms from the page's script start, after the bundle is parsed, until the mount
resolves: slice 1 rendered), ``all`` (until every slice is loaded and decoded in Cornerstone's cache),
then ``scroll``: 30 jumps across the series after everything is loaded (goToSlice → rendered), its
median and max, and the network requests made while scrolling (0: scrolling never waits on the
network once prefetched). ``--mbps`` throttles the page's network (Chrome DevTools emulation) to
look at a hospital LAN or a remote reader; 0 = loopback as is. Printed: medians with min–max per
way, the ratio naive/ours for the first slice, and the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devkit.synth_series import generate_series_dataset  # noqa: E402
from labeling.gt.viewer_assets import VIEWER_BUILD_DIR  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, _serve  # noqa: E402

SCROLL_JUMPS = 30
SCHEMA = {"labels": [{"name": "Nodule", "shapes": ["ellipse"]}]}

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>first slice bench</title>
<script type="module" src="/viewer/viewer.js"></script></head><body><div id="host"></div>
<script type="module">
  const config = %s;
  const t0 = performance.now();
  const until = async (test) => { while (!test()) await new Promise((r) => setTimeout(r, 2)); };
  try {
    let slices = config.slices;
    if (config.way === 'naive') {
      const blobs = await Promise.all(slices.map((s) => fetch(s.url).then((r) => {
        if (!r.ok) throw new Error(`${s.url}: HTTP ${r.status}`);
        return r.blob();
      })));
      slices = slices.map((s, i) => ({ ...s, url: URL.createObjectURL(blobs[i]) }));
    }
    const v = await window.DicomAnnotateViewer.mount(document.getElementById('host'),
      { schema: config.schema, slices });
    const first = performance.now() - t0;
    const n = slices.length;
    await until(() => { const s = v.getViewState().slice; return s.loaded + s.failed === n; });
    const all = performance.now() - t0;
    const failed = v.getViewState().slice.failed;
    const before = performance.getEntriesByType('resource').length;
    const scroll = [];
    for (let j = 1; j <= config.jumps; j += 1) {
      const t = performance.now();
      await v.goToSlice((j * 37) %% n);
      await new Promise((r) => requestAnimationFrame(r));
      scroll.push(performance.now() - t);
    }
    const requests = performance.getEntriesByType('resource').length - before;
    window.__result = { first, all, failed, scroll, requests };
  } catch (e) {
    window.__result = { error: String(e && e.message || e) };
  }
</script></body></html>"""


def run_once(browser: Any, server: Any, pages: Path, way: str, slices: list[dict], mbps: float) -> dict:
    config = {"way": way, "schema": SCHEMA, "slices": slices, "jumps": SCROLL_JUMPS}
    name = f"{way}.html"
    (pages / name).write_text(PAGE % json.dumps(config), encoding="utf-8")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        if mbps > 0:
            cdp = context.new_cdp_session(page)
            rate = mbps * 1e6 / 8
            cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 1,
                                                           "downloadThroughput": rate, "uploadThroughput": rate})
        page.goto(server.url(f"/pages/{name}"))
        page.wait_for_function("() => window.__result !== undefined", timeout=600_000)
        result = page.evaluate("() => window.__result")
    finally:
        context.close()
    if "error" in result:
        raise SystemExit(f"{way}: the page failed: {result['error']}")
    if result["failed"]:
        raise SystemExit(f"{way}: {result['failed']} slice(s) failed to load")
    return result


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.0f} ({min(values):.0f}–{max(values):.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=200, help="slices in the series (8–512; default 200)")
    parser.add_argument("--size", type=int, default=256, help="rows = columns of a slice (64–512; default 256)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each way, interleaved (default 5)")
    parser.add_argument("--mbps", type=float, default=0.0,
                        help="throttle the page's network to this many Mbit/s (default 0: loopback as is)")
    args = parser.parse_args(argv)
    if not (VIEWER_BUILD_DIR / "viewer.js").is_file():
        parser.error(f"{VIEWER_BUILD_DIR}/viewer.js is missing: run `make viewer` first")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="da-bench-viewer-"))
    try:
        started = time.perf_counter()
        summary = generate_series_dataset(work / "raw", series=1, slices=args.slices, size=args.size,
                                          multiframe=False, progress=False)
        truth = json.loads((work / "raw" / "ground_truth.jsonl").read_text().splitlines()[0])
        data, pages = work / "data", work / "pages"
        data.mkdir()
        pages.mkdir()
        paths = {p.stem: p for p in (work / "raw").rglob("*.dcm")}
        for instance, sop in zip(truth["instances"], truth["sop_instance_uids"]):
            shutil.copy(paths[sop], data / f"{instance}.dcm")
        # The manifest's order: increasing z, the reverse of InstanceNumber for these axial slices.
        slices = [{"url": f"/data/{i}.dcm", "instance": i, "frame": 0} for i in reversed(truth["instances"])]
        megabytes = sum(p.stat().st_size for p in data.iterdir()) / 1e6
        print(f"series: {summary.images} slices of {args.size}² ({megabytes:.1f} MB), made in "
              f"{time.perf_counter() - started:.1f} s; network: "
              f"{f'{args.mbps:g} Mbit/s (emulated)' if args.mbps else 'loopback'}")
        print(f"load average before: {os.getloadavg()}  (shared machine: compare medians, not single runs)")
        server = _serve({"/viewer/": VIEWER_BUILD_DIR, "/data/": data, "/pages/": pages}, cors=False)
        results: dict[str, list[dict]] = {"ours": [], "naive": []}
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for r in range(args.rounds):
                    for way in (("ours", "naive") if r % 2 == 0 else ("naive", "ours")):
                        res = run_once(browser, server, pages, way, slices, args.mbps)
                        results[way].append(res)
                        print(f"  round {r + 1} {way:5s}: first {res['first']:7.0f} ms  all {res['all']:7.0f} ms  "
                              f"scroll median {statistics.median(res['scroll']):5.1f} ms  "
                              f"requests while scrolling {res['requests']}", flush=True)
                browser.close()
        finally:
            server.httpd.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nmedians over {args.rounds} round(s), ms (min–max):")
    print(f"{'':6s} {'first slice':>22s} {'all slices loaded':>22s} {'scroll (median of 30)':>24s}")
    for way, runs in results.items():
        print(f"{way:6s} {spread([r['first'] for r in runs]):>22s} {spread([r['all'] for r in runs]):>22s} "
              f"{spread([statistics.median(r['scroll']) for r in runs]):>24s}")
    ours_first = statistics.median(r["first"] for r in results["ours"])
    naive_first = statistics.median(r["first"] for r in results["naive"])
    worst_scroll = max(max(r["scroll"]) for r in results["ours"])
    requests = sum(r["requests"] for r in results["ours"])
    print(f"first slice: naive / ours = {naive_first / ours_first:.1f}x; goal < 1000 ms: "
          f"{'met' if ours_first < 1000 else 'NOT met'} ({ours_first:.0f} ms)")
    print(f"after prefetch (ours): slowest jump {worst_scroll:.1f} ms, network requests while scrolling: {requests}")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
