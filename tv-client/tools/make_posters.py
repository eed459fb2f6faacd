#!/usr/bin/env python3
"""Draws the demo catalog's posters (assets/posters/<item-id>.png, 400x600).

Run from the repository root:  pip install pillow && python3 tv-client/tools/make_posters.py
The PNGs are committed; re-run only to change the artwork. Deterministic (seeded).
"""

import math
import os
import random

from PIL import Image, ImageDraw, ImageFilter, ImageFont

W, H = 400, 600
S = 2  # drawn at twice the size, then scaled down for smooth edges
OUT = os.path.join("assets", "posters")
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
REGULAR = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def font(path, size):
    return ImageFont.truetype(path, size * S)


def gradient(top, bottom):
    img = Image.new("RGB", (W * S, H * S))
    d = ImageDraw.Draw(img)
    for y in range(H * S):
        t = y / (H * S - 1)
        d.line([(0, y), (W * S, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    return img


def glow(img, center, radius, color, strength=0.8):
    layer = Image.new("RGB", img.size, (0, 0, 0))
    d = ImageDraw.Draw(layer)
    cx, cy = center
    d.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
    layer = layer.filter(ImageFilter.GaussianBlur(radius * 0.6))
    return Image.blend(img, Image.composite(layer, img, layer.convert("L")), strength)


def title(d, text, y, size, fill=(255, 255, 255), spacing=0.12, f=BOLD):
    fnt = font(f, size)
    widths = [d.textlength(c, font=fnt) for c in text]
    total = sum(widths) + spacing * size * S * (len(text) - 1)
    x = (W * S - total) / 2
    for c, w in zip(text, widths):
        d.text((x, y * S), c, font=fnt, fill=fill)
        x += w + spacing * size * S


def centered(d, text, y, size, fill, f=REGULAR):
    fnt = font(f, size)
    w = d.textlength(text, font=fnt)
    d.text(((W * S - w) / 2, y * S), text, font=fnt, fill=fill)


def finish(img, name):
    img = img.resize((W, H), Image.LANCZOS)
    img.save(os.path.join(OUT, name + ".png"), optimize=True)


def night_train():
    rnd = random.Random(1)
    img = gradient((14, 18, 48), (58, 30, 78))
    img = glow(img, (300 * S, 250 * S), 60 * S, (255, 236, 190), 0.9)
    d = ImageDraw.Draw(img)
    for _ in range(140):
        x, y, r = rnd.uniform(0, W * S), rnd.uniform(0, 330 * S), rnd.choice([1, 1, 2, 3])
        d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255))
    # A crescent: the moon's disc minus an offset disc, so the sky shows through.
    moon = Image.new("L", img.size, 0)
    m = ImageDraw.Draw(moon)
    m.ellipse([268 * S, 218 * S, 332 * S, 282 * S], fill=255)
    m.ellipse([284 * S, 208 * S, 348 * S, 272 * S], fill=0)
    img.paste((255, 244, 214), mask=moon)
    d = ImageDraw.Draw(img)
    far = [(0, 390), (60, 330), (120, 370), (190, 300), (260, 360), (330, 310), (400, 350), (400, 600), (0, 600)]
    d.polygon([(x * S, y * S) for x, y in far], fill=(30, 24, 58))
    near = [(0, 440), (90, 400), (170, 430), (260, 395), (400, 430), (400, 600), (0, 600)]
    d.polygon([(x * S, y * S) for x, y in near], fill=(17, 14, 34))
    # The train: locomotive and three carriages with lit windows, on a viaduct.
    d.rectangle([0, 470 * S, W * S, 476 * S], fill=(60, 50, 90))
    for i in range(6):
        x = i * 70 + 10
        d.arc([x * S, 476 * S, (x + 60) * S, 540 * S], 180, 360, fill=(60, 50, 90), width=5 * S)
    x0 = 30
    for car in range(4):
        x = x0 + car * 92
        d.rounded_rectangle([x * S, 432 * S, (x + 86) * S, 468 * S], radius=6 * S, fill=(26, 30, 44))
        for wdw in range(4):
            wx = x + 8 + wdw * 19
            d.rectangle([wx * S, 442 * S, (wx + 12) * S, 454 * S], fill=(255, 196, 92))
    img = glow(img, (200 * S, 450 * S), 120 * S, (120, 80, 20), 0.25)
    d = ImageDraw.Draw(img)
    title(d, "NIGHT", 36, 58, spacing=0.2)
    title(d, "TRAIN", 100, 58, fill=(255, 196, 92), spacing=0.2)
    centered(d, "THE LAST SLEEPER TO VENICE", 552, 15, (200, 190, 230))
    finish(img, "film-night-train")


def atlas_of_birds():
    rnd = random.Random(2)
    img = gradient((255, 176, 120), (40, 120, 140))
    img = glow(img, (200 * S, 330 * S), 90 * S, (255, 240, 200), 0.7)
    d = ImageDraw.Draw(img)
    d.ellipse([140 * S, 270 * S, 260 * S, 390 * S], fill=(255, 236, 200))
    # Sea with the sun's reflection.
    d.rectangle([0, 390 * S, W * S, H * S], fill=(24, 86, 110))
    for i in range(11):
        y = 398 + i * 12
        half = 70 - i * 4
        d.line([((200 - half) * S, y * S), ((200 + half) * S, y * S)], fill=(255, 214, 170), width=3 * S)
    # The migration: a dotted great-circle arc and a flock along it.
    pts = [(40 + t * 3.2, 300 - 110 * math.sin(t / 100 * math.pi)) for t in range(0, 101, 4)]
    for x, y in pts:
        d.ellipse([(x - 2) * S, (y - 2) * S, (x + 2) * S, (y + 2) * S], fill=(255, 255, 255))
    for _ in range(26):
        t = rnd.uniform(0.25, 0.9)
        x = 40 + t * 320 + rnd.uniform(-30, 30)
        y = 300 - 110 * math.sin(t * math.pi) + rnd.uniform(-30, 30)
        s = rnd.uniform(6, 14)
        d.line([((x - s) * S, (y - s / 2) * S), (x * S, y * S), ((x + s) * S, (y - s / 2) * S)],
               fill=(28, 40, 52), width=int(2.5 * S), joint="curve")
    title(d, "AN ATLAS", 40, 44, fill=(30, 40, 56), spacing=0.16)
    title(d, "OF BIRDS", 92, 44, fill=(255, 255, 255), spacing=0.16)
    centered(d, "A YEAR OF MIGRATION · 4K", 552, 15, (220, 240, 240))
    finish(img, "film-cloud-atlas-of-birds")


def plus_monthly():
    img = gradient((28, 22, 12), (10, 10, 14))
    img = glow(img, (200 * S, 250 * S), 130 * S, (255, 170, 40), 0.55)
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([110 * S, 160 * S, 290 * S, 340 * S], radius=44 * S, fill=(255, 180, 46))
    d.rounded_rectangle([186 * S, 190 * S, 214 * S, 310 * S], radius=8 * S, fill=(30, 20, 6))
    d.rounded_rectangle([140 * S, 236 * S, 260 * S, 264 * S], radius=8 * S, fill=(30, 20, 6))
    title(d, "COUCHPAY", 390, 38, spacing=0.18)
    title(d, "PLUS", 438, 64, fill=(255, 180, 46), spacing=0.25)
    centered(d, "EVERY FILM · NO ADVERTS · 30 DAYS", 552, 14, (200, 190, 170))
    finish(img, "plus-monthly")


def lamp_aurora():
    img = gradient((44, 30, 26), (16, 12, 12))
    d = ImageDraw.Draw(img)
    # Light cone from the shade down to the floor.
    cone = Image.new("L", img.size, 0)
    ImageDraw.Draw(cone).polygon([(170 * S, 200 * S), (250 * S, 200 * S), (330 * S, 520 * S), (90 * S, 520 * S)], fill=110)
    cone = cone.filter(ImageFilter.GaussianBlur(18 * S))
    img = Image.composite(Image.new("RGB", img.size, (255, 214, 150)), img, cone)
    img = glow(img, (210 * S, 185 * S), 70 * S, (255, 200, 120), 0.6)
    d = ImageDraw.Draw(img)
    d.ellipse([100 * S, 510 * S, 320 * S, 540 * S], fill=(70, 52, 40))
    d.rectangle([206 * S, 200 * S, 214 * S, 520 * S], fill=(210, 200, 190))
    d.ellipse([170 * S, 512 * S, 250 * S, 530 * S], fill=(220, 210, 200))
    d.polygon([(160 * S, 205 * S), (260 * S, 205 * S), (238 * S, 140 * S), (182 * S, 140 * S)], fill=(246, 236, 220))
    title(d, "AURORA", 40, 56, fill=(255, 226, 180), spacing=0.2)
    centered(d, "READING LAMP", 112, 22, (230, 210, 190), f=BOLD)
    centered(d, "DIMMABLE · WARM WHITE LED", 560, 15, (200, 180, 160))
    finish(img, "lamp-aurora")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    night_train()
    atlas_of_birds()
    plus_monthly()
    lamp_aurora()
