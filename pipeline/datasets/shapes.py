"""A procedural data set in which colour, shape and texture each separate some classes and none separates all.

The demo compares feature families, so the classes are built to need them together: seven classes are
told apart only by shape or texture (their colours come from one shared distribution), three only by
the hue of an irregular blob that looks the same in all three. Clutter, occluding distractors, varied
position, scale and tilt, low contrast and pixel noise keep every model below 100 % without label noise.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
from skimage.color import hsv2rgb

from pipeline.datasets import DataError, RawDataset, StreamedImages

# Bump whenever the drawing changes, so that the checksum (and any DVC cache keyed on it) changes too.
GENERATOR_VERSION = 1

SHAPE_DEFINED_CLASSES = [
    "disk", "square", "triangle", "cross", "horizontal_stripes", "vertical_stripes", "checkerboard",
]
# Hues in turns (0..1, as skimage.color.rgb2hsv returns them). None sits at 0, where rgb2hsv puts every
# grey pixel, and each band stays inside one bin of a 10-bin hue histogram.
HUE_OF_COLOUR_CLASS = {"red_blob": 0.95, "green_blob": 0.35, "blue_blob": 0.65}
SHAPES_CLASSES = SHAPE_DEFINED_CLASSES + list(HUE_OF_COLOUR_CLASS)

COLOUR_CLASS_HUE_HALF_WIDTH = 0.035
# Every other colour (shape classes, background, distractors) stays this far, in turns, from the
# colour-class hues, so that hue names those classes and nothing else.
RESERVED_HUE_HALF_WIDTH = 0.07
OBJECT_RADIUS_FRACTION = (0.25, 0.40)  # of the image side
CENTRE_JITTER_FRACTION = 0.08  # of the image side, around the image centre
MAX_TILT_RADIANS = np.deg2rad(12.0)
STRIPE_PERIOD_FRACTION = (0.12, 0.18)  # of the image side: 4 to 6 pixels at 32 x 32
BLOB_DISKS = 3  # a blob is the union of this many overlapping disks
LUMINANCE_STEP = (0.2, 0.45)  # grey-level difference between object and background, either sign
LOW_CONTRAST_PROBABILITY = 0.2
LOW_CONTRAST_RANGE = (0.2, 0.45)  # fraction of the object-to-background colour difference kept
MAX_DISTRACTORS = 3
OCCLUDING_PROBABILITY = 0.35  # a distractor is drawn over the object rather than behind it
NOISE_STD_RANGE = (0.01, 0.05)  # per image, on the 0..1 intensity scale
PIXELS_PER_CHUNK = 2**22  # bounds memory while rendering: about 16 MiB per float32 (m, S, S) array

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 256
MIN_TRAIN_PER_CLASS = 10


def make_shapes(n_train: int = 5000, n_test: int = 1000, image_size: int = 32, seed: int = 0) -> RawDataset:
    """Generate the shapes data set in memory; the same arguments give byte-identical arrays.

    Train and test come from independent random streams of the same seed, so the test split does not
    change when n_train does. Classes are balanced: their counts differ by at most one.
    """
    raw = stream_shapes(n_train=n_train, n_test=n_test, image_size=image_size, seed=seed)
    return RawDataset(raw.class_names, raw.train.materialize(), raw.test.materialize(), raw.source, raw.checksum)


def stream_shapes(n_train: int = 5000, n_test: int = 1000, image_size: int = 32, seed: int = 0) -> RawDataset:
    """`make_shapes` with each split a StreamedImages: rendered a chunk at a time when read, never held whole.

    The scene parameters (about 0.5 KB an image) are drawn up front, as `make_shapes` always has, so
    the images are byte-identical to it; only the pixels are made chunk by chunk.
    """
    _check_arguments(n_train=n_train, n_test=n_test, image_size=image_size, seed=seed)
    # Plain ints, so that numpy integers from a params file give the same checksum and still serialise.
    n_train, n_test, image_size, seed = int(n_train), int(n_test), int(image_size), int(seed)
    train_stream, test_stream = np.random.SeedSequence(seed).spawn(2)
    parameters = {"n_train": n_train, "n_test": n_test, "image_size": image_size, "seed": seed}
    canonical = json.dumps({"generator": "shapes", "version": GENERATOR_VERSION, **parameters}, sort_keys=True)
    return RawDataset(
        class_names=list(SHAPES_CLASSES),
        train=_make_split(n_train, image_size, train_stream),
        test=_make_split(n_test, image_size, test_stream),
        source=f"shapes(seed={seed}, n_train={n_train}, n_test={n_test}, image_size={image_size})",
        checksum=hashlib.sha256(canonical.encode()).hexdigest(),
    )


def _check_arguments(*, n_train, n_test, image_size, seed) -> None:
    n_classes = len(SHAPES_CLASSES)
    minimum_train = MIN_TRAIN_PER_CLASS * n_classes
    for name, value in [("n_train", n_train), ("n_test", n_test), ("image_size", image_size), ("seed", seed)]:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DataError(f"shapes: {name} must be an integer, got {value!r}")
    if n_train < minimum_train:
        raise DataError(
            f"shapes: n_train must be >= {minimum_train} ({MIN_TRAIN_PER_CLASS} per class x {n_classes} classes), "
            f"got {n_train}"
        )
    if n_test < n_classes:
        raise DataError(f"shapes: n_test must be >= {n_classes} (one per class), got {n_test}")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise DataError(f"shapes: image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {image_size}")
    if seed < 0:
        raise DataError(f"shapes: seed must be >= 0, got {seed}")


def _make_split(n_images: int, image_size: int, seed_sequence: np.random.SeedSequence) -> StreamedImages:
    """Labels now; pixels a chunk at a time on each pass, from a fresh generator of the same stream.

    The chunk size is a constant (not the reader's batch size), so the noise each image draws, and
    so every image, is the same however the split is read.
    """
    labels = np.random.default_rng(seed_sequence).permutation(np.arange(n_images) % len(SHAPES_CLASSES))

    def batches():
        rng = np.random.default_rng(seed_sequence)
        rng.permutation(np.arange(n_images) % len(SHAPES_CLASSES))  # the labels' draw: scenes and noise follow it
        scenes = _draw_scenes(labels, image_size, rng)
        chunk = max(1, PIXELS_PER_CHUNK // image_size**2)
        for start in range(0, n_images, chunk):
            part = slice(start, start + chunk)
            yield _render({key: value[part] for key, value in scenes.items()}, image_size, rng)

    return StreamedImages(labels, (image_size, image_size, 3), batches)


def _draw_scenes(labels: np.ndarray, image_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every random choice of every image except the pixel noise, as arrays with one row per image.

    Lengths are in pixels, angles in radians, colours RGB in 0..1.
    """
    n = len(labels)
    n_shapes = len(SHAPE_DEFINED_CLASSES)
    is_colour_class = labels >= n_shapes
    class_hue = np.array(list(HUE_OF_COLOUR_CLASS.values()))[np.maximum(labels - n_shapes, 0)]
    object_hue = np.where(
        is_colour_class,
        (class_hue + rng.uniform(-COLOUR_CLASS_HUE_HALF_WIDTH, COLOUR_CLASS_HUE_HALF_WIDTH, n)) % 1.0,
        _shared_hues(rng, n),
    )
    background_rgb = _hsv_to_rgb(_shared_hues(rng, n), rng.uniform(0.05, 0.25, n), rng.uniform(0.25, 0.85, n))
    object_luminance = _luminance(background_rgb) + rng.choice([-1, 1], n) * rng.uniform(*LUMINANCE_STEP, n)
    object_rgb = _with_luminance(_hsv_to_rgb(object_hue, rng.uniform(0.45, 1.0, n), np.ones(n)),
                                 np.clip(object_luminance, 0.05, 0.95))
    radius = rng.uniform(*OBJECT_RADIUS_FRACTION, n) * image_size
    scenes = {
        "shape": np.minimum(labels, n_shapes),  # index n_shapes is the blob of the colour classes
        "radius": radius,
        "centre": image_size * (0.5 + rng.uniform(-CENTRE_JITTER_FRACTION, CENTRE_JITTER_FRACTION, (n, 2))),
        "tilt": rng.uniform(-MAX_TILT_RADIANS, MAX_TILT_RADIANS, n),
        "triangle_turn": rng.integers(0, 4, n) * np.pi / 2,  # up, down, left or right, then tilted
        "stripe_period": rng.uniform(*STRIPE_PERIOD_FRACTION, n) * image_size,
        # In units of the radius: disks of radius 0.4-0.65 around points within 0.5 of the centre.
        "blob_offsets": _points_in_unit_disk(rng, (n, BLOB_DISKS)) * 0.5,
        "blob_radii": rng.uniform(0.4, 0.65, (n, BLOB_DISKS)),
        "object_rgb": object_rgb,
        "contrast": np.where(rng.random(n) < LOW_CONTRAST_PROBABILITY, rng.uniform(*LOW_CONTRAST_RANGE, n), 1.0),
        "background_rgb": background_rgb,
        "background_slope": rng.uniform(-0.3, 0.3, (n, 2)),  # intensity change across the whole image
        "noise_std": rng.uniform(*NOISE_STD_RANGE, n),
        "n_distractors": rng.integers(0, MAX_DISTRACTORS + 1, n),
    }
    scale = image_size / 32  # distractor sizes below are in pixels of a 32 x 32 image
    slots = (n, MAX_DISTRACTORS)
    is_dot = rng.random(slots) < 0.5
    scenes.update({
        "distractor_centre": rng.uniform(0, image_size, slots + (2,)),
        "distractor_angle": rng.uniform(0, np.pi, slots),
        "distractor_half_length": np.where(is_dot, 0.0, rng.uniform(1.5, 4.5, slots)) * scale,
        "distractor_half_width": np.where(is_dot, rng.uniform(1.0, 2.5, slots), rng.uniform(0.5, 1.0, slots)) * scale,
        "distractor_occludes": rng.random(slots) < OCCLUDING_PROBABILITY,
        "distractor_rgb": _hsv_to_rgb(
            _shared_hues(rng, n * MAX_DISTRACTORS), rng.uniform(0.3, 1.0, n * MAX_DISTRACTORS),
            rng.uniform(0.2, 1.0, n * MAX_DISTRACTORS),
        ).reshape(slots + (3,)),
    })
    return scenes


def _shared_hues(rng: np.random.Generator, n: int) -> np.ndarray:
    """Hues uniform over the circle minus the reserved bands around the colour-class hues."""
    band_starts = np.sort(np.array(list(HUE_OF_COLOUR_CLASS.values()))) + RESERVED_HUE_HALF_WIDTH
    gap_lengths = np.diff(band_starts, append=band_starts[0] + 1.0) - 2 * RESERVED_HUE_HALF_WIDTH
    position = rng.uniform(0, gap_lengths.sum(), n)  # along the allowed arcs laid end to end
    gap_ends = np.cumsum(gap_lengths)
    gap = np.minimum(np.searchsorted(gap_ends, position, side="right"), len(gap_ends) - 1)
    return (band_starts[gap] + position - (gap_ends[gap] - gap_lengths[gap])) % 1.0


def _points_in_unit_disk(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    angle, distance = rng.uniform(0, 2 * np.pi, shape), np.sqrt(rng.random(shape))
    return np.stack([distance * np.cos(angle), distance * np.sin(angle)], axis=-1)


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """(n,) hue, saturation, value in 0..1 -> (n, 3) RGB in 0..1."""
    return hsv2rgb(np.stack([hue, saturation, value], axis=-1)[:, None, :])[:, 0, :]


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (...) grey level, with the weights of skimage.color.rgb2gray (what HoG sees)."""
    return rgb @ np.array([0.2125, 0.7154, 0.0721])


def _with_luminance(rgb: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Scale (n, 3) colours to (n,) grey levels, keeping hue and saturation; bright saturated ones fall short."""
    factor = np.minimum(target / np.maximum(_luminance(rgb), 1e-6), 1.0 / np.max(rgb, axis=-1))
    return rgb * factor[:, None]


def _render(scenes: dict[str, np.ndarray], image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Background, distractors behind, the object, distractors in front, then noise -> (m, S, S, 3) uint8."""
    pixel_centres = np.arange(image_size, dtype=np.float32) + 0.5
    y, x = pixel_centres[None, :, None], pixel_centres[None, None, :]

    slope = scenes["background_slope"].astype(np.float32)
    ramp = (slope[:, 0, None, None] * (x - image_size / 2) + slope[:, 1, None, None] * (y - image_size / 2))
    ramp /= image_size
    canvas = scenes["background_rgb"].astype(np.float32)[:, None, None, :] + ramp[..., None]

    def paint(mask, rgb):
        np.copyto(canvas, rgb.astype(np.float32)[:, None, None, :], where=mask[..., None])

    distractor_masks = [
        _capsule_mask(
            x, y, scenes["distractor_centre"][:, slot], scenes["distractor_angle"][:, slot],
            scenes["distractor_half_length"][:, slot], scenes["distractor_half_width"][:, slot],
        ) & (slot < scenes["n_distractors"])[:, None, None]
        for slot in range(MAX_DISTRACTORS)
    ]
    for occluding in (False, True):
        if occluding:
            # Blend towards the background colour: a low-contrast object keeps its hue but loses its edges.
            background = scenes["background_rgb"]
            object_rgb = background + scenes["contrast"][:, None] * (scenes["object_rgb"] - background)
            paint(_object_mask(scenes, x, y), object_rgb)
        for slot, mask in enumerate(distractor_masks):
            in_this_layer = scenes["distractor_occludes"][:, slot] == occluding
            paint(mask & in_this_layer[:, None, None], scenes["distractor_rgb"][:, slot])

    noise_std = scenes["noise_std"].astype(np.float32)[:, None, None, None]
    noise = rng.standard_normal(canvas.shape, dtype=np.float32) * noise_std
    return np.rint(np.clip(canvas + noise, 0.0, 1.0) * 255).astype(np.uint8)


def _object_mask(scenes: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(m, S, S) bool: each image's object, drawn in coordinates centred on it, tilted, in units of its radius."""
    def per_image(key):
        return scenes[key].astype(np.float32)[:, None, None]

    radius, tilt = per_image("radius"), per_image("tilt")
    dx, dy = x - scenes["centre"][:, 0, None, None], y - scenes["centre"][:, 1, None, None]
    u = (np.cos(tilt) * dx + np.sin(tilt) * dy) / radius
    v = (-np.sin(tilt) * dx + np.cos(tilt) * dy) / radius
    period = per_image("stripe_period") / radius
    patch = np.maximum(np.abs(u), np.abs(v)) <= 0.9

    masks = [
        u**2 + v**2 <= 1.0,
        np.maximum(np.abs(u), np.abs(v)) <= 0.8,
        _triangle_mask(u, v, per_image("triangle_turn")),
        ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0)),
        patch & ((v / period) % 1.0 < 0.5),
        patch & ((u / period) % 1.0 < 0.5),
        patch & ((np.floor(u / (0.5 * period)) + np.floor(v / (0.5 * period))) % 2 == 0),
        _blob_mask(u, v, scenes["blob_offsets"], scenes["blob_radii"]),
    ]
    chosen = scenes["shape"][:, None, None]
    return np.select([chosen == index for index in range(len(masks))], masks, default=False)


def _triangle_mask(u: np.ndarray, v: np.ndarray, turn: np.ndarray) -> np.ndarray:
    """Equilateral triangle with circumradius 1: inside all three edges, each at distance 0.5 from the centre."""
    inside = np.ones(u.shape, dtype=bool)
    for edge in range(3):
        normal = turn + edge * 2 * np.pi / 3
        inside &= np.cos(normal) * u + np.sin(normal) * v <= 0.5
    return inside


def _blob_mask(u: np.ndarray, v: np.ndarray, offsets: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Union of overlapping disks: an irregular shape that is neither disk, square, triangle nor cross."""
    inside = np.zeros(u.shape, dtype=bool)
    for disk in range(radii.shape[1]):
        du = u - offsets[:, disk, 0, None, None].astype(np.float32)
        dv = v - offsets[:, disk, 1, None, None].astype(np.float32)
        inside |= du**2 + dv**2 <= radii[:, disk, None, None].astype(np.float32) ** 2
    return inside


def _capsule_mask(x, y, centre, angle, half_length, half_width) -> np.ndarray:
    """(m, S, S) bool: points within half_width of a segment; half_length 0 gives a round dot."""
    dx, dy = x - centre[:, 0, None, None], y - centre[:, 1, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    along = np.clip(cos * dx + sin * dy, -half_length[:, None, None], half_length[:, None, None])
    return (dx - along * cos) ** 2 + (dy - along * sin) ** 2 <= half_width[:, None, None] ** 2
