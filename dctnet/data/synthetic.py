"""Procedural two-domain portraits: the same random face rendered as a "photo" and as a "cartoon".

Why hand-written: tests and the demo need a small, license-free, exactly paired two-domain dataset
that no package ships. A face is a set of parameters (head, hair, eyes, mouth, glasses, mask,
shoulders, background); the photo rendering adds soft lighting, skin texture and sensor noise, the
cartoon rendering uses a brighter flat palette, black outlines and exaggerated eyes. Training folders
hold different random faces in each domain (unpaired); the test folders hold exact pairs.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from dctnet.data.decode import write_image

log = logging.getLogger(__name__)

GENERATOR_VERSION = 4  # bump when the rendering or the files written change: old datasets are regenerated
SUPERSAMPLE = 4  # draw at 4x and downsample with area interpolation: anti-aliased edges


@dataclass
class FaceParams:
    """Everything that defines one synthetic portrait, independent of the rendering style."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    shirt: tuple[float, float, float]
    background: tuple[float, float, float]
    background2: tuple[float, float, float]
    iris: tuple[float, float, float]
    center_x: float
    center_y: float
    head_rx: float
    head_ry: float
    tilt: float
    hair_style: int  # 0 short, 1 long, 2 bun
    eye_spacing: float
    eye_size: float
    eye_open: float  # 0 closed .. 1 wide open: a label for the facial perception loss
    gaze: float
    mouth_width: float
    mouth_open: float  # 0 closed .. 1 wide open
    glasses: bool
    mask: bool
    light: float  # direction of the key light for the photo rendering, radians
    skin_tone: float  # 0 dark .. 1 light; ``skin`` is derived from it


# Attributes a portrait has or not: the labels of the coverage classifier, and what a biased exemplar set
# (``exemplars_without``) leaves out of the training cartoons while photos and test pairs keep them.
ATTRIBUTES: dict[str, Callable[[FaceParams], bool]] = {
    "glasses": lambda face: face.glasses,
    "mask": lambda face: face.mask,
    "long_hair": lambda face: face.hair_style == 1,
    "bun": lambda face: face.hair_style == 2,
    "dark_skin": lambda face: face.skin_tone < 0.45,
}


def face_attributes(face: FaceParams) -> dict[str, bool]:
    return {name: bool(has(face)) for name, has in ATTRIBUTES.items()}


def check_attributes(names: Sequence[str]) -> list[str]:
    unknown = [name for name in names if name not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown synthetic attribute(s) {unknown}; choose from {sorted(ATTRIBUTES)}")
    return list(names)


def _colour(rng: np.random.Generator, low: float, high: float) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(low, high, size=3))


def sample_face(rng: np.random.Generator) -> FaceParams:
    """Draw one random face."""
    skin_tone = rng.uniform(0.25, 0.95)
    skin = (0.35 + 0.6 * skin_tone, 0.25 + 0.55 * skin_tone, 0.18 + 0.5 * skin_tone)
    return FaceParams(
        skin=skin,
        hair=_colour(rng, 0.02, 0.6),
        shirt=_colour(rng, 0.1, 0.9),
        background=_colour(rng, 0.2, 0.95),
        background2=_colour(rng, 0.2, 0.95),
        iris=_colour(rng, 0.05, 0.6),
        center_x=float(rng.uniform(0.44, 0.56)),
        center_y=float(rng.uniform(0.44, 0.52)),
        head_rx=float(rng.uniform(0.19, 0.25)),
        head_ry=float(rng.uniform(0.25, 0.31)),
        tilt=float(rng.uniform(-12, 12)),
        hair_style=int(rng.integers(0, 3)),
        eye_spacing=float(rng.uniform(0.08, 0.11)),
        eye_size=float(rng.uniform(0.028, 0.042)),
        eye_open=float(rng.uniform(0.15, 1.0)),
        gaze=float(rng.uniform(-0.4, 0.4)),
        mouth_width=float(rng.uniform(0.05, 0.09)),
        mouth_open=float(rng.uniform(0.0, 1.0)),
        glasses=bool(rng.random() < 0.25),
        mask=bool(rng.random() < 0.1),
        light=float(rng.uniform(0, 2 * np.pi)),
        skin_tone=float(skin_tone),
    )


def sample_face_without(rng: np.random.Generator, excluded: Sequence[str], keep: float = 0.0) -> FaceParams:
    """Draw faces until one has none of the ``excluded`` attributes (the biased exemplar set); a face that has one
    is still taken with probability ``keep`` (0: the attribute is absent; 0.2: about five times rarer than in
    the photos)."""
    while True:
        face = sample_face(rng)
        if not any(ATTRIBUTES[name](face) for name in excluded):
            return face
        if keep > 0 and rng.random() < keep:  # no draw at 0: absent-attribute sets stay byte-identical
            return face


def _bgr255(colour: tuple[float, float, float], gain: float = 1.0) -> tuple[int, int, int]:
    r, g, b = (int(np.clip(c * gain * 255, 0, 255)) for c in colour)
    return (r, g, b)  # we draw in RGB order throughout


def _cartoon_palette(colour: tuple[float, float, float]) -> tuple[float, float, float]:
    """The cartoon style: brighter, more saturated, slightly warm flat colours."""
    c = np.asarray(colour)
    mean = c.mean()
    c = mean + (c - mean) * 1.6  # saturate
    c = 0.15 + 0.9 * c  # lift shadows
    c = c * np.array([1.05, 1.0, 0.95])
    return tuple(float(v) for v in np.clip(c, 0, 1))


def cartoon_rgb(colour: tuple[float, float, float]) -> tuple[int, int, int]:
    """The 8-bit RGB a cartoon draws for a face colour (its palette applied)."""
    return _bgr255(_cartoon_palette(colour))


# Flat cartoon skin for ``skin_tones=True``: one colour per side of the ``dark_skin`` boundary (skin_tone 0.45).
CARTOON_SKIN_TONES = ((0.62, 0.40, 0.27), (1.0, 0.84, 0.70))  # warm brown, peach


def cartoon_skin(face: FaceParams, skin_tones: bool) -> tuple[float, float, float]:
    """The cartoon's skin colour: the palette of the photo's skin, or one of two flat tones (``skin_tones``).

    Two flat skin tones are a common cartoon convention, and one that a TTN cannot infer from exemplars that
    all show the light tone: it paints every face peach (measured in README.md). Only cartoons with dark skin,
    real or calibrated, can teach it the brown: a biased benchmark on this style asks the paper's question.
    """
    if not skin_tones:
        return face.skin
    return CARTOON_SKIN_TONES[0] if ATTRIBUTES["dark_skin"](face) else CARTOON_SKIN_TONES[1]


def render(face: FaceParams, size: int, style: str, rng: np.random.Generator, skin_tones: bool = False) -> np.ndarray:
    """Render ``face`` as ``style`` ('photo' or 'cartoon') to a ``size x size x 3`` uint8 array.

    ``skin_tones``: the cartoon draws skin in two flat tones instead of the palette of the photo's skin.
    """
    if style not in ("photo", "cartoon"):
        raise ValueError(f"style must be 'photo' or 'cartoon', got {style!r}")
    cartoon = style == "cartoon"
    s = size * SUPERSAMPLE
    px = lambda v: int(round(v * s))  # noqa: E731 - local unit conversion
    colour = cartoon_rgb if cartoon else _bgr255
    line = max(1, px(0.012)) if cartoon else 0
    ink = (25, 20, 30)
    skin = cartoon_skin(face, skin_tones) if cartoon else face.skin

    # The same two-colour backdrop in both renderings (the cartoon's in its palette), so that a paired
    # target is a function of its photo: the domains differ in rendering, not in content.
    canvas = np.zeros((s, s, 3), np.uint8)
    ramp = np.linspace(0, 1, s)[:, None, None]
    top = np.array(colour(face.background), np.float32)
    bottom = np.array(colour(face.background2), np.float32)
    canvas[:] = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)

    cx, cy = px(face.center_x), px(face.center_y)
    rx, ry = px(face.head_rx), px(face.head_ry)

    def ellipse(img, centre, axes, angle, fill, outline=True, start=0, end=360):
        cv2.ellipse(img, centre, axes, angle, start, end, fill, -1, cv2.LINE_AA)
        if cartoon and outline and line:
            cv2.ellipse(img, centre, axes, angle, start, end, ink, line, cv2.LINE_AA)

    # shoulders and neck
    ellipse(canvas, (cx, s + px(0.05)), (px(0.42), px(0.3)), 0, colour(face.shirt))
    neck_w = int(rx * 0.45)
    cv2.rectangle(canvas, (cx - neck_w, cy + int(ry * 0.6)), (cx + neck_w, s - px(0.2)), colour(skin), -1)
    if cartoon:
        for x in (cx - neck_w, cx + neck_w):
            cv2.line(canvas, (x, cy + int(ry * 0.7)), (x, s - px(0.22)), ink, line, cv2.LINE_AA)
    # hair behind the head
    if face.hair_style == 1:
        ellipse(canvas, (cx, cy + int(ry * 0.3)), (int(rx * 1.3), int(ry * 1.2)), face.tilt, colour(face.hair))
    if face.hair_style == 2:
        ellipse(canvas, (cx, cy - int(ry * 1.05)), (int(rx * 0.5), int(ry * 0.35)), 0, colour(face.hair))
    # head
    ellipse(canvas, (cx, cy), (rx, ry), face.tilt, colour(skin))
    # hair on top (upper half ellipse)
    ellipse(canvas, (cx, cy - int(ry * 0.25)), (int(rx * 1.08), int(ry * 0.85)), face.tilt, colour(face.hair),
            start=180, end=360)

    rotation = np.deg2rad(face.tilt)

    def at(dx: float, dy: float) -> tuple[int, int]:
        """Face-relative offset (fractions of the image) rotated by the head tilt."""
        x = dx * np.cos(rotation) - dy * np.sin(rotation)
        y = dx * np.sin(rotation) + dy * np.cos(rotation)
        return (cx + px(x), cy + px(y))

    eye_scale = 1.45 if cartoon else 1.0
    eye_w = px(face.eye_size * eye_scale)
    eye_h = max(1, int(eye_w * (0.12 + 0.6 * face.eye_open)))
    for side in (-1, 1):
        centre = at(side * face.eye_spacing, 0.0)
        brow = at(side * face.eye_spacing, -0.055 - 0.02 * face.eye_open)
        cv2.line(canvas, (brow[0] - eye_w, brow[1]), (brow[0] + eye_w, brow[1] - px(0.005)),
                 colour(face.hair) if not cartoon else ink, max(2, px(0.012)), cv2.LINE_AA)
        ellipse(canvas, centre, (eye_w, eye_h), face.tilt, (250, 250, 250))
        iris_r = max(1, min(eye_h, int(eye_w * 0.55)))
        iris_c = (centre[0] + int(face.gaze * eye_w * 0.4), centre[1])
        cv2.circle(canvas, iris_c, iris_r, colour(face.iris), -1, cv2.LINE_AA)
        cv2.circle(canvas, iris_c, max(1, iris_r // 2), (10, 10, 10), -1, cv2.LINE_AA)
        if cartoon:
            cv2.circle(canvas, (iris_c[0] - iris_r // 3, iris_c[1] - iris_r // 3), max(1, iris_r // 3),
                       (255, 255, 255), -1, cv2.LINE_AA)
        if face.glasses:
            cv2.circle(canvas, centre, int(eye_w * 1.5), (30, 30, 30), max(2, px(0.008)), cv2.LINE_AA)
    if face.glasses:
        left, right = at(-face.eye_spacing, 0), at(face.eye_spacing, 0)
        cv2.line(canvas, (left[0] + int(eye_w * 1.5), left[1]), (right[0] - int(eye_w * 1.5), right[1]),
                 (30, 30, 30), max(2, px(0.008)), cv2.LINE_AA)
    # nose
    nose = at(0.0, 0.06)
    if cartoon:
        cv2.line(canvas, at(0.0, 0.03), nose, ink, max(1, line // 2), cv2.LINE_AA)
    else:
        shade = _bgr255(face.skin, 0.8)
        cv2.ellipse(canvas, nose, (px(0.015), px(0.01)), face.tilt, 0, 360, shade, -1, cv2.LINE_AA)
    # mouth or mask
    mouth = at(0.0, 0.13)
    if face.mask:
        ellipse(canvas, at(0.0, 0.12), (int(rx * 0.85), int(ry * 0.32)), face.tilt, colour((0.85, 0.9, 0.95)))
    else:
        mouth_w = px(face.mouth_width)
        mouth_h = max(1, int(mouth_w * (0.08 + 0.55 * face.mouth_open)))
        ellipse(canvas, mouth, (mouth_w, mouth_h), face.tilt, colour((0.55, 0.12, 0.15)))

    image = canvas.astype(np.float32) / 255.0
    if not cartoon:
        # soft directional light over the whole portrait, skin texture, sensor noise and slight blur
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
        light = 0.94 + 0.12 * (np.cos(face.light) * xx + np.sin(face.light) * yy)
        image = image * light[..., None]
        texture = cv2.GaussianBlur(rng.normal(0, 1, (s // 8, s // 8)).astype(np.float32), (0, 0), 1.0)
        texture = cv2.resize(texture, (s, s), interpolation=cv2.INTER_CUBIC)
        image = image * (1 + 0.06 * texture[..., None])
        image = cv2.GaussianBlur(image, (0, 0), SUPERSAMPLE * 0.6)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    if not cartoon:
        image = image + rng.normal(0, 0.02, image.shape).astype(np.float32)
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def generate_dataset(
    out: str | Path,
    size: int = 64,
    photos: int = 200,
    cartoons: int = 100,
    test: int = 16,
    seed: int = 0,
    exemplars_without: Sequence[str] = (),
    skin_tones: bool = False,
    exemplars_keep: float = 0.0,
) -> Path:
    """Write ``photos/``, ``cartoons/`` (different faces) and paired ``test_photos/`` + ``test_cartoons/``.

    A ``faces.csv`` per folder records each image's parameters and attributes (eye and mouth openness are
    the labels the facial perception loss can be checked against). ``exemplars_without`` names attributes
    (see ``ATTRIBUTES``) that no training cartoon has, as in a biased few-shot style set; with ``exemplars_keep``
    > 0 they are rare instead of absent (``sample_face_without``). ``skin_tones``: the cartoons draw skin in two
    flat tones (``cartoon_skin``). Photos are drawn first: they are the same whatever the exemplars' bias.
    """
    out = Path(out)
    excluded = check_attributes(exemplars_without)
    if not 0.0 <= exemplars_keep < 1.0:
        raise ValueError(f"exemplars_keep is a probability below 1, got {exemplars_keep}")
    if exemplars_keep > 0 and not excluded:
        raise ValueError("exemplars_keep makes the exemplars_without attributes rare: name at least one")
    rng = np.random.default_rng(seed)
    plan = [("photos", photos, ("photo",)), ("cartoons", cartoons, ("cartoon",)),
            ("test", test, ("photo", "cartoon"))]
    for name, count, styles in plan:
        folders = {st: out / (f"test_{st}s" if name == "test" else name) for st in styles}
        rows = []
        for index in range(count):
            face = sample_face_without(rng, excluded, exemplars_keep) if name == "cartoons" else sample_face(rng)
            for st, folder in folders.items():
                write_image(folder / f"{index:05d}.png", render(face, size, st, rng, skin_tones))
            rows.append({"file": f"{index:05d}.png", **asdict(face), **face_attributes(face)})
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "attributes.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["file", "eyes", "mouth"])
                writer.writerows([r["file"], f"{r['eye_open']:.4f}", f"{0.0 if r['mask'] else r['mouth_open']:.4f}"]
                                 for r in rows)
            with open(folder / "faces.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["file"])
                writer.writeheader()
                writer.writerows(rows)
    return out


def ensure_dataset(root: str | Path, size: int, photos: int, cartoons: int, test: int, seed: int,
                   exemplars_without: Sequence[str] = (), skin_tones: bool = False,
                   exemplars_keep: float = 0.0) -> Path:
    """Generate the synthetic dataset under ``root`` unless it is already complete with these parameters.

    Existing data is never rewritten: a dataset generated with other parameters is moved aside to
    ``<root>.<old signature hash>`` (with a warning), and a folder that the generator did not write is an error.
    """
    root = Path(root)
    marker, generating = root / ".complete", root / ".generating"
    signature = (f"version={GENERATOR_VERSION} size={size} photos={photos} cartoons={cartoons} test={test} "
                 f"seed={seed} exemplars_without={','.join(exemplars_without)}"
                 + (" skin_tones" if skin_tones else "")
                 + (f" exemplars_keep={exemplars_keep}" if exemplars_keep else "") + "\n")  # defaults' unchanged
    if marker.is_file() and marker.read_text() == signature:
        return root
    if marker.is_file():
        old = marker.read_text()
        aside = root.with_name(f"{root.name}.{hashlib.sha256(old.encode()).hexdigest()[:8]}")
        if aside.exists():
            shutil.rmtree(root)  # that older dataset is already kept aside; this copy is a regenerable duplicate
        else:
            root.rename(aside)
        log.warning("synthetic data in %s was generated with other parameters (%s); kept at %s, generating anew",
                    root, old.strip(), aside)
    elif root.is_dir() and any(root.iterdir()) and not generating.is_file():
        raise FileExistsError(f"data.root={root} holds files the synthetic generator did not write; set "
                              "data.root to an empty or new folder, or data.synthetic.generate=false to use them")
    root.mkdir(parents=True, exist_ok=True)
    generating.write_text(signature)
    generate_dataset(root, size=size, photos=photos, cartoons=cartoons, test=test, seed=seed,
                     exemplars_without=exemplars_without, skin_tones=skin_tones, exemplars_keep=exemplars_keep)
    marker.write_text(signature)
    generating.unlink()
    return root
