#!/usr/bin/env python3
"""Reference decode rates on the same real-photo set as the companion's real_photos test.

Runs zxing-cpp (PyPI `zxing-cpp`) and zbar (PyPI `pyzbar` + Debian `libzbar0`) over
target/qr-photos/zxing-blackbox (see tools/fetch-qr-photos.sh) and prints, per set, the
share of pictures where the decoder returns the expected text. For comparison only;
nothing in the build or tests depends on it.
"""
import pathlib
import sys

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
            try:
                if want in [norm(t) for t in dec(img)]:
                    hits[name] += 1
            except Exception:
                pass
    n_all += n
    for name in decoders:
        totals[name] += hits[name]
    print(f"{d.name:<10} {n:>4} " + " ".join(f"{100 * hits[k] / n:>9.1f}%" for k in decoders))
print(f"{'all':<10} {n_all:>4} " + " ".join(f"{100 * totals[k] / n_all:>9.1f}%" for k in decoders))
