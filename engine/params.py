"""The one parameter object of a style-transfer run.

UI, CLI and gallery all read defaults, presets and validation from here. This module must
stay free of torch (and of anything heavy) so the web UI can import it at start-up.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from engine.devices import DEVICES, MAX_GPUS, is_device
from engine.layers import LAYERS

OPTIMIZERS = ("lbfgs", "adam")
# Step and gradient-change pairs L-BFGS keeps (engine.lbfgs; engine.memory counts them).
LBFGS_HISTORY = 20
# Convolutions with this many output channels or more run by Winograd's algorithm on the CPU
# (engine.winograd; engine.memory counts their transformed kernels).
WINOGRAD_MIN_OUT_CHANNELS = 256
INITS = ("content", "noise", "image")
POOLINGS = ("max", "avg")
# Named weights; anything else is taken as a path to a weights file.
BUILTIN_WEIGHTS = ("caffe", "torchvision")

# Prints: larger runs are evaluated in tiles (engine/tiled.py) and refused only when the image and
# the optimiser's state do not fit in the host's memory (engine.memory).
MIN_SIZE, MAX_SIZE = 16, 16384
MAX_ITERATIONS = 10_000
MAX_STYLES = 8
MAX_WEIGHT = 1e9


@dataclass(frozen=True)
class Params:
    """Everything that determines a result. Images are paths; the gallery stores copies."""

    content: str = ""
    styles: tuple[str, ...] = ()
    # Relative weights of the styles, one per style; empty means equal weights.
    style_blend: tuple[float, ...] = ()
    # Where each style applies: one grey-level image per style (white = here), "" or "all" for
    # everywhere; empty means no masks (every style everywhere, blended). engine.masks loads them.
    style_masks: tuple[str, ...] = ()
    size: int = 512  # longest side of the result, px
    iterations: int = 500  # at each scale; a coarser scale's step costs about a quarter as much
    optimizer: str = "lbfgs"
    learning_rate: float = 10.0
    content_weight: float = 5.0
    style_weight: float = 100.0
    tv_weight: float = 1e-3
    content_layers: tuple[str, ...] = ("conv4_2",)
    style_layers: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    # Per-style-layer weights, one per style layer; empty means equal weights.
    style_layer_weights: tuple[float, ...] = ()
    init: str = "content"
    init_image: str = ""  # the image a run starts from when init is "image" (resized to the first scale)
    seed: int = 0
    style_scale: float = 1.0  # the style image's longest side relative to the result's
    original_colors: bool = False
    pooling: str = "max"
    device: str = "auto"
    preview_every: int = 0  # 0: no intermediate images
    # Clips (engine/clip_transfer.py): frames after the first start from the previous result warped
    # by the input's motion and are held to it where that motion is reliable, with this weight
    # (0: every frame on its own), for frame_iterations at the final size.
    temporal_weight: float = 1e4
    frame_iterations: int = 100
    multiscale: bool = True
    # Multi-scale runs only the sizes above this one: a print grown from a 512 px result at 2048 px
    # runs 1024 and 2048 px. 0: from MULTISCALE_MIN_SIZE up, as a run from scratch.
    multiscale_from: int = 0
    weights: str = "caffe"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Params:
        """Builds params from a dict, ignoring unknown keys (written by newer releases)."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            if isinstance(_DEFAULTS.get(key), tuple):
                value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> Params:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ParamsError({"params": "expected a JSON object"})
        return cls.from_dict(data)

    def with_changes(self, **changes: Any) -> Params:
        return replace(self, **changes)

    def blend_weights(self) -> tuple[float, ...]:
        """Style blend weights normalised to sum to 1."""
        raw = self.style_blend or (1.0,) * len(self.styles)
        total = sum(raw)
        return tuple(w / total for w in raw)

    def layer_weights(self) -> tuple[float, ...]:
        return self.style_layer_weights or (1.0,) * len(self.style_layers)

    def style_side(self, size: int, native: int | None = None) -> int:
        """The longest side a style image is made when the result's is `size`: style_scale times
        it, but a painting whose own longest side is `native` is never enlarged past style_scale
        times that. A 1000 px painting stretched to a print's 8192 px would make its fine layers'
        Gram targets the statistics of interpolation blur; at its own resolution it keeps its
        brush texture at the fine scales while the coarse scales set the large strokes
        (docs/quality.md, "Prints")."""
        return max(MIN_SIZE, round(min(size, native or size) * self.style_scale))

    def scale_sizes(self) -> list[int]:
        """Sizes optimised in turn, coarse to fine; the last one is `size`. Every scale gets the
        full `iterations`, so a run's coarse stage is exactly the run one would make at that size:
        a small preview predicts the large result (a stage cut short left the large result less
        styled than its preview, docs/quality.md). A coarse step costs about a quarter of the next
        scale's, so this adds about a third to a single-scale run's time."""
        sizes = [self.size]
        if self.multiscale:
            while sizes[0] // 2 >= MULTISCALE_MIN_SIZE and sizes[0] // 2 > self.multiscale_from:
                sizes.insert(0, sizes[0] // 2)
        return sizes

    def total_iterations(self) -> int:
        return len(self.scale_sizes()) * self.iterations

    def work(self, aspect: float = 1.0, frames: int = 1) -> float:
        """The run's cost in pixel-iterations: an iteration costs about its scale's pixel count
        (`aspect` is the content's short side over its long side). A clip of `frames` frames:
        the first is a full run, each later one `frame_iterations` at the final size."""
        first = sum(side * side * aspect for side in self.scale_sizes()) * self.iterations
        return first + max(0, frames - 1) * self.size * self.size * aspect * self.frame_iterations

    def work_done(self, iteration: int, frame: int = 0, frames: int = 1) -> float:
        """The share of the run's work done after `iteration` (counted over all scales; a clip's
        within `frame`, 1-based, the one in progress). Progress and ETA count this, not
        iterations: a coarse scale's iterations are quick, so the last scale is most of a
        multi-scale run's time."""
        total, done = self.work(frames=frames), 0.0
        if frame > 1:
            done = self.work() + (frame - 2 + min(max(0, iteration), self.frame_iterations) / self.frame_iterations) \
                * self.size * self.size * self.frame_iterations
        else:
            left = max(0, min(iteration, self.total_iterations()))
            for side in self.scale_sizes():
                steps = min(left, self.iterations)
                done, left = done + steps * side * side, left - steps
        return min(1.0, done / total) if total else 0.0


# One line of help per field, shared by the CLI's --help and the UI's tooltips.
HELP: dict[str, str] = {
    "content": "the photo to repaint",
    "styles": "one or more paintings whose style to apply",
    "style_blend": "relative weight of each style image (one per style)",
    "style_masks": ("where each style applies: one grey-level image per style, white = here, soft edges "
                    "blend, 'all' = everywhere; overlaps share by blend weight, and where no mask "
                    "covers a pixel all styles blend there as without masks"),
    "size": "longest side of the result in pixels",
    "iterations": "optimisation steps at each size (multi-scale repeats them at each coarser size, cheaply)",
    "optimizer": "lbfgs (best per step) or adam (less memory)",
    "learning_rate": "Adam's step size in pixel units (L-BFGS ignores it)",
    "content_weight": "how strongly the result keeps the photo's content",
    "style_weight": "how strongly the result takes the paintings' style",
    "tv_weight": "total-variation weight: higher is smoother",
    "content_layers": "VGG19 layers whose features the content loss matches",
    "style_layers": "VGG19 layers whose Gram matrices the style loss matches",
    "style_layer_weights": "weight of each style layer (one per style layer)",
    "init": "start from the content image, from noise, or from init_image (e.g. a smaller result, to make a print)",
    "init_image": "the image to start from (sets init to image); resized to the first scale's size",
    "seed": "random seed (noise init); the same seed repeats a result on CPU",
    "style_scale": "size of the style images relative to the result (2 = bigger brush strokes)",
    "original_colors": "keep the photo's colours, take only the painting's texture",
    "pooling": "max or avg pooling inside VGG19 (avg is smoother)",
    "device": "auto (GPU when present), cpu, cuda (any GPU) or cuda:N (that one)",
    "preview_every": "save an intermediate image every N iterations (0 = none)",
    "temporal_weight": "clips: how strongly each frame keeps to the previous result moved by the input's motion "
                       "(0 = frames independent; flicker)",
    "frame_iterations": "clips: iterations for each frame after the first (which gets the full run)",
    "multiscale": "optimise coarse to fine so a small preview predicts the large result",
    "multiscale_from": ("multi-scale runs only the sizes above this one (a print grown from a 512 px result: 512); "
                        "0 = every size from 128 px"),
    "weights": "caffe (embedded original VGG19), torchvision, or a path to a weights file",
}


# Below this, VGG19's deepest layers have almost no spatial extent left.
MULTISCALE_MIN_SIZE = 128

_DEFAULTS = {f.name: f.default for f in fields(Params)}

PRESETS: dict[str, dict[str, Any]] = {
    "draft": {"size": 256, "iterations": 100, "multiscale": False, "preview_every": 10},
    "balanced": {"size": 512, "iterations": 300, "multiscale": True, "preview_every": 25},
    "high quality": {"size": 1024, "iterations": 800, "multiscale": True, "preview_every": 50},
}


def eta_seconds(elapsed: float | None, done: float) -> float | None:
    """Seconds left when a share `done` (0..1, see Params.work_done) of a run took `elapsed`;
    None until there is something to go on."""
    if elapsed is None or not 0 < done <= 1:
        return None
    return elapsed * (1 - done) / done


def preset(name: str, **changes: Any) -> Params:
    if name not in PRESETS:
        raise ParamsError({"preset": f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}"})
    return Params(**{**PRESETS[name], **changes})


class ParamsError(ValueError):
    """Invalid parameters: `errors` maps each bad field to one message a person understands."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


# The checks take a field's value as Any or object, not as declared: Params are built from JSON and
# forms without conversion, so until validated a field may hold anything.
def _check_number(errors: dict[str, str], name: str, value: Any, lo: float, hi: float,
                  integer: bool = False, lo_open: bool = False) -> None:
    kind = "a whole number" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value != value:  # value != value: NaN
        errors[name] = f"must be {kind}, got {value!r}"
    elif (value <= lo if lo_open else value < lo) or value > hi:
        low = f"greater than {lo:g}" if lo_open else f"at least {lo:g}"
        errors[name] = f"must be {low} and at most {hi:g}, got {value:g}"


def _check_choice(errors: dict[str, str], name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        errors[name] = f"must be one of {', '.join(choices)}, got {value!r}"


def _check_layers(errors: dict[str, str], name: str, layers: Any) -> None:
    if not isinstance(layers, tuple) or not layers:
        errors[name] = "needs at least one layer"
        return
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown:
        errors[name] = f"unknown layer {unknown[0]!r}; layers are {', '.join(LAYERS)}"
    elif len(set(layers)) != len(layers):
        errors[name] = "lists a layer twice"


def _check_weight_list(errors: dict[str, str], name: str, values: tuple, expected: int, of: str) -> None:
    if not values:
        return
    if len(values) != expected:
        errors[name] = f"has {len(values)} weights but there are {expected} {of}"
    elif any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_WEIGHT for v in values):
        errors[name] = f"weights must be numbers from 0 to {MAX_WEIGHT:g}"
    elif sum(values) <= 0:
        errors[name] = "at least one weight must be above 0"


def _check_masks(errors: dict[str, str], p: Params, need_images: bool) -> None:
    masks = p.style_masks
    if not isinstance(masks, tuple) or not all(isinstance(m, str) for m in masks):
        errors["style_masks"] = "must be image paths (or 'all'), one per style image"
    elif masks and isinstance(p.styles, tuple) and (need_images or p.styles) and len(masks) != len(p.styles):
        errors["style_masks"] = (f"has {len(masks)} masks but there are {len(p.styles)} style images; "
                                 "give one per style ('all' for a style that applies everywhere)")


def _check_init_image(errors: dict[str, str], path: object, init: object, need_images: bool) -> None:
    if not isinstance(path, str):
        errors["init_image"] = "must be an image path"
    elif init == "image" and need_images and not path:
        errors["init_image"] = "choose the image to start from (init is image)"
    elif path and init != "image":
        errors["init_image"] = f"is used only when init is image, not {init!r}"


def _check_flag(errors: dict[str, str], name: str, value: object) -> None:
    if not isinstance(value, bool):
        errors[name] = "must be true or false"


def validation_errors(p: Params, need_images: bool = True) -> dict[str, str]:
    """One message per bad field; empty when the params are valid. `need_images=False` checks
    settings alone (as the UI does before anything is uploaded)."""
    errors: dict[str, str] = {}
    if need_images:
        if not isinstance(p.content, str) or not p.content:
            errors["content"] = "choose a content image"
        if not isinstance(p.styles, tuple) or not p.styles:
            errors["styles"] = "choose at least one style image"
        elif len(p.styles) > MAX_STYLES:
            errors["styles"] = f"at most {MAX_STYLES} style images, got {len(p.styles)}"
    if isinstance(p.style_blend, tuple) and isinstance(p.styles, tuple):
        expected = len(p.styles) if need_images or p.styles else len(p.style_blend)
        _check_weight_list(errors, "style_blend", p.style_blend, expected, "style images")
    _check_masks(errors, p, need_images)
    _check_number(errors, "size", p.size, MIN_SIZE, MAX_SIZE, integer=True)
    _check_number(errors, "iterations", p.iterations, 1, MAX_ITERATIONS, integer=True)
    _check_choice(errors, "optimizer", p.optimizer, OPTIMIZERS)
    _check_number(errors, "learning_rate", p.learning_rate, 0, 1e3, lo_open=True)
    _check_number(errors, "content_weight", p.content_weight, 0, MAX_WEIGHT)
    _check_number(errors, "style_weight", p.style_weight, 0, MAX_WEIGHT)
    _check_number(errors, "tv_weight", p.tv_weight, 0, MAX_WEIGHT)
    _check_layers(errors, "content_layers", p.content_layers)
    _check_layers(errors, "style_layers", p.style_layers)
    if "style_layers" not in errors and isinstance(p.style_layer_weights, tuple):
        _check_weight_list(errors, "style_layer_weights", p.style_layer_weights, len(p.style_layers), "style layers")
    _check_choice(errors, "init", p.init, INITS)
    _check_init_image(errors, p.init_image, p.init, need_images)
    _check_number(errors, "multiscale_from", p.multiscale_from, 0, MAX_SIZE, integer=True)
    _check_number(errors, "seed", p.seed, 0, 2**63 - 1, integer=True)
    _check_number(errors, "style_scale", p.style_scale, 0.05, 8.0)
    _check_flag(errors, "original_colors", p.original_colors)
    _check_flag(errors, "multiscale", p.multiscale)
    _check_choice(errors, "pooling", p.pooling, POOLINGS)
    if not is_device(p.device):
        errors["device"] = f"must be one of {', '.join(DEVICES)} or cuda:N (one GPU of several), got {p.device!r}"
        if isinstance(p.device, str) and p.device.startswith("cuda:"):
            errors["device"] += f"; N is 0 to {MAX_GPUS - 1}, without leading zeros"
    _check_number(errors, "preview_every", p.preview_every, 0, MAX_ITERATIONS, integer=True)
    _check_number(errors, "temporal_weight", p.temporal_weight, 0, MAX_WEIGHT)
    _check_number(errors, "frame_iterations", p.frame_iterations, 1, MAX_ITERATIONS, integer=True)
    if not isinstance(p.weights, str) or not p.weights:
        errors["weights"] = f"must be one of {', '.join(BUILTIN_WEIGHTS)} or a path to a weights file"
    return errors


def validate(p: Params, need_images: bool = True) -> Params:
    """Returns `p` unchanged, or raises ParamsError listing every bad field."""
    errors = validation_errors(p, need_images)
    if errors:
        raise ParamsError(errors)
    return p
