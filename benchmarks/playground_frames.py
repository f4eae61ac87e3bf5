"""How large are the playground's frames, and how long does the page take to draw them?

For each network (hidden layers x units, on xor), the size of one frame as the server sends it (JSON text,
as ``server._send`` writes it) with its largest parts, and the server's time to build it. With ``--browser``,
it also starts ``handgrad playground``, opens the page in headless Chromium (Playwright, /usr/bin/chromium),
builds each network there and plays for a few seconds: frames drawn per second, and the median time from a
frame's arrival to the next painted picture (drawFrame plus the browser's style, layout and paint).

    python benchmarks/playground_frames.py                       # sizes: 2x4, 6x64, 8x64
    python benchmarks/playground_frames.py --browser --seconds 5
    python benchmarks/playground_frames.py --nets 2x4 --json     # one line of JSON at the end
    python benchmarks/playground_frames.py --nets 2x4 --samples 5000 --batch-size 2500   # a large batch

Nothing here is asserted: tests/test_playground_frames.py runs it on a small net and checks the report's shape.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from handgrad.io import json_safe
from handgrad.playground.session import Session

CHROMIUM = "/usr/bin/chromium"


def parse_net(text):
    layers, units = (int(part) for part in text.lower().split("x"))
    return layers, units


def config_for(layers, units, samples=200, batch_size=10):
    return {"hidden": [{"size": units, "activation": "tanh"} for _ in range(layers)], "batch_size": batch_size,
            "data": {"name": "xor", "n_samples": samples, "noise": 0.1, "test_fraction": 0.5, "seed": 0}}


def frame_report(layers, units, repeats=5, samples=200, batch_size=10):
    """The size of one frame of a layers x units net (bytes of its JSON text), its five largest parts, and the
    server's median time to build and encode it (with the weight panel open, on batches of ``batch_size``)."""
    session = Session(config_for(layers, units, samples, batch_size))
    session.run_epoch()
    session.select_weight(1, 0, 0)  # an open weight panel, as a user has
    seconds, text = [], ""
    for _ in range(repeats):
        started = time.perf_counter()
        frame = session.frame()
        text = json.dumps(frame, allow_nan=False, default=json_safe)
        seconds.append(time.perf_counter() - started)
    parts = {key: len(json.dumps(value, default=json_safe)) for key, value in frame.items()}
    largest = dict(sorted(parts.items(), key=lambda item: -item[1])[:5])
    return {"net": f"{layers}x{units}", "batch_size": len(session.current_batch()[0]),
            "weights": int(sum(layer.W.size for layer in session.net.layers)),
            "frame_bytes": len(text.encode()), "largest_parts": largest,
            "build_ms": round(1000 * statistics.median(seconds), 2)}


TIMING = """() => {
  window.__draws = [];
  const draw = window.drawFrame;
  window.drawFrame = (message) => {
    const start = performance.now();
    draw(message);
    const script = performance.now() - start;
    requestAnimationFrame(() => setTimeout(() => window.__draws.push([script, performance.now() - start]), 0));
  };
}"""


def browser_report(nets, seconds):
    """Play each net in headless Chromium for ``seconds``: frames drawn per second, median draw times."""
    from playwright.sync_api import sync_playwright

    server = subprocess.Popen([sys.executable, "-m", "handgrad", "playground", "--no-browser", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url, reports = server.stdout.readline().strip(), []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_selector('[data-value="state"]:text("paused")')
            page.evaluate(TIMING)
            for layers, units in nets:
                page.evaluate(f"() => {{ state.hidden = Array.from({{length: {layers}}}, "
                              f"() => newLayer({{size: {units}}})); drawLayerEditor(); configure(); }}")
                lines = 2 * units + (layers - 1) * units * units + units
                page.wait_for_function(f"() => document.querySelectorAll('[data-panel=\"diagram\"] line').length "
                                       f"=== {lines}", timeout=60000)
                page.wait_for_timeout(500)
                page.evaluate("() => { window.__draws = []; }")
                epoch = int(page.locator('[data-value="epoch"]').inner_text())
                page.click('[data-action="play"]')
                page.wait_for_timeout(int(seconds * 1000))
                page.click('[data-action="pause"]')
                page.wait_for_selector('[data-value="state"]:text("paused")', timeout=60000)
                page.wait_for_timeout(300)
                draws = page.evaluate("() => window.__draws")
                script, paint = ([round(statistics.median(d[n] for d in draws), 1) for n in (0, 1)] if draws
                                 else [None, None])
                reports.append({"net": f"{layers}x{units}", "frames": len(draws),
                                "frames_per_s": round(len(draws) / seconds, 2),
                                "epochs": int(page.locator('[data-value="epoch"]').inner_text()) - epoch,
                                "draw_script_ms": script, "draw_to_paint_ms": paint})
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return reports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="2x4,6x64,8x64", help="hidden layers x units, comma-separated")
    parser.add_argument("--browser", action="store_true", help="also time the drawing in headless Chromium")
    parser.add_argument("--seconds", type=float, default=5.0, help="play time per net in the browser")
    parser.add_argument("--samples", type=int, default=200, help="data points (half of them for training)")
    parser.add_argument("--batch-size", type=int, default=10, help="the batch the weight panel's numbers use")
    parser.add_argument("--json", action="store_true", help="end with the report as one line of JSON")
    args = parser.parse_args(argv)
    nets = [parse_net(text) for text in args.nets.split(",")]
    report = {"frames": [frame_report(*net, samples=args.samples, batch_size=args.batch_size) for net in nets]}
    for entry in report["frames"]:
        print(f"{entry['net']:>6}: {entry['weights']:6d} weights, batch {entry['batch_size']}, "
              f"frame {entry['frame_bytes'] / 1024:8.1f} KiB, "
              f"built in {entry['build_ms']:6.2f} ms; largest parts (bytes): {entry['largest_parts']}")
    if args.browser:
        if not os.path.exists(CHROMIUM):
            parser.error(f"no Chromium at {CHROMIUM}")
        report["browser"] = browser_report(nets, args.seconds)
        for entry in report["browser"]:
            print(f"{entry['net']:>6}: {entry['frames_per_s']} frames/s drawn while playing ({entry['epochs']} epochs "
                  f"in {args.seconds:g} s), median draw {entry['draw_script_ms']} ms (script), "
                  f"{entry['draw_to_paint_ms']} ms (to paint)")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
