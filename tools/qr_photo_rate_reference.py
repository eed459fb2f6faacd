#!/usr/bin/env python3
"""Reference decode rates on the same real-photo set as the companion's real_photos test.

Runs zxing-cpp (PyPI `zxing-cpp`) and zbar (PyPI `pyzbar` + Debian `libzbar0`) over
target/qr-photos/zxing-blackbox (see tools/fetch-qr-photos.sh) and prints, per set, the
share of pictures where the decoder returns the expected text, and each decoder's time
per picture (p50, p95, max), to compare with the companion's in one run. For comparison only;
nothing in the build or tests depends on it.
"""
import pathlib
import sys
import time

from PIL import Image

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/qr-photos/zxing-blackbox")


def expected(txt):
    raw = txt.read_bytes()
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        s = raw.decode("latin-1")
    return s.replace("\r\n", "\n").rstrip("\r\n")


def norm(s):
    return s.replace("\r\n", "\n").rstrip("\r\n")


decoders = {}
try:
    import zxingcpp

    decoders["zxing-cpp"] = lambda img: [r.text for r in zxingcpp.read_barcodes(img)]
except ImportError:
    pass
try:
    from pyzbar import pyzbar

    def zbar(img):
        out = []
        for r in pyzbar.decode(img):
            try:
                out.append(r.data.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(r.data.decode("latin-1"))
        return out

    decoders["zbar"] = zbar
except ImportError:
    pass

totals = {name: 0 for name in decoders}
# Seconds per picture and decoder (the decode call only; loading is not counted).
times = {name: [] for name in decoders}
n_all = 0
print(f"{'set':<10} {'n':>4} " + " ".join(f"{n:>10}" for n in decoders))
for d in sorted(p for p in root.iterdir() if p.is_dir()):
    hits = {name: 0 for name in decoders}
    n = 0
    for pic in sorted(d.glob("*.png")):
        txt = pic.with_suffix(".txt")
        if not txt.exists():
            continue
        want = expected(txt)
        img = Image.open(pic).convert("L")
        n += 1
        for name, dec in decoders.items():
            started = time.perf_counter()
            try:
                texts = dec(img)
            except Exception:
                texts = []
            times[name].append(time.perf_counter() - started)
            if want in [norm(t) for t in texts]:
                hits[name] += 1
    n_all += n
    for name in decoders:
        totals[name] += hits[name]
    print(f"{d.name:<10} {n:>4} " + " ".join(f"{100 * hits[k] / n:>9.1f}%" for k in decoders))
print(f"{'all':<10} {n_all:>4} " + " ".join(f"{100 * totals[k] / n_all:>9.1f}%" for k in decoders))


def pct(sorted_times, p):
    return sorted_times[round((len(sorted_times) - 1) * p)] * 1e3


for name, ts in times.items():
    ts.sort()
    if ts:
        print(f"{name} time per picture: p50 {pct(ts, 0.5):.1f} ms, p95 {pct(ts, 0.95):.1f} ms, "
              f"max {ts[-1] * 1e3:.1f} ms")
