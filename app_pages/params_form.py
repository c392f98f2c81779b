"""The Create page's settings: presets plus an "Advanced" expander with every engine parameter.

Widgets hold their values under `p_<field>` keys in session state. Defaults, presets, choices
and bounds all come from engine.params; the widgets deliberately have no min/max of their own,
so an out-of-range value reaches `validation_errors` and the engine's message is shown beside
the field (one source of truth for what is valid).
"""
from __future__ import annotations

import secrets
from collections.abc import Mapping, MutableMapping
from typing import Any

import streamlit as st

from app_pages import auth
from app_pages.common import escape_md
from engine.devices import DEVICES, gpu_count, gpu_device
from engine.params import (
    BUILTIN_WEIGHTS,
    HELP,
    INITS,
    LAYERS,
    MAX_STYLES,
    OPTIMIZERS,
    POOLINGS,
    PRESETS,
    Params,
    preset,
)
from engine.params import validation_errors as engine_validation_errors

DEFAULT_PRESET = "balanced"
PRESET_KEY = "preset"
# Survives page switches, unlike widget state (Streamlit drops the state of widgets a run
# does not draw, so a trip to the Queue would otherwise reset the form).
SAVED_KEY = "saved_form"

# field -> widget kind; the order is the order on the page within each group.
SCALAR_FIELDS: dict[str, str] = {
    "size": "int", "iterations": "int", "multiscale": "bool", "preview_every": "int",
    "content_weight": "float", "style_weight": "float", "tv_weight": "float",
    "style_scale": "float", "original_colors": "bool",
    "optimizer": "choice", "learning_rate": "float", "init": "choice", "seed": "int",
    "device": "choice", "pooling": "choice", "weights": "choice",
    "frame_iterations": "int", "temporal_weight": "float", "multiscale_from": "int",
}
# With several GPUs, each can be asked for by name too.
_GPUS = gpu_count()
CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": OPTIMIZERS, "init": INITS, "pooling": POOLINGS,
    "device": DEVICES + tuple(gpu_device(i) for i in range(_GPUS) if _GPUS > 1),
    "weights": BUILTIN_WEIGHTS,
}
STEPS = {"content_weight": 0.5, "style_weight": 10.0, "tv_weight": 0.001, "learning_rate": 1.0,
         "style_scale": 0.1, "temporal_weight": 1000.0}
LABELS = {
    "size": "Size (px)", "iterations": "Iterations", "multiscale": "Multiscale",
    "preview_every": "Preview every", "content_weight": "Content weight",
    "style_weight": "Style weight", "tv_weight": "TV weight (smoothness)",
    "style_scale": "Style scale", "original_colors": "Original colors",
    "optimizer": "Optimizer", "learning_rate": "Learning rate", "init": "Start from",
    "seed": "Seed", "device": "Device", "pooling": "Pooling", "weights": "VGG19 weights",
    "content_layers": "Content layers", "style_layers": "Style layers",
    "frame_iterations": "Frame iterations", "temporal_weight": "Temporal weight",
    "style_layer_weights": "Style layer weights", "style_blend": "Style blend", "style_masks": "Regions",
    "multiscale_from": "Multiscale from (px)", "init_image": "Initial image",
}
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Output", ("size", "iterations", "preview_every")),
    ("Loss weights", ("content_weight", "style_weight", "tv_weight")),
    ("Style and schedule", ("style_scale", "original_colors", "multiscale", "multiscale_from")),
    ("Optimisation", ("optimizer", "learning_rate", "init", "seed")),
    ("Compute", ("device", "pooling", "weights")),
    ("Clips (a GIF, WebP or video as content)", ("frame_iterations", "temporal_weight")),
)


def key(field: str) -> str:
    return f"p_{field}"


def layer_weight_key(layer: str) -> str:
    return f"p_lw_{layer}"


def blend_key(index: int) -> str:
    return f"p_blend_{index}"


# --- pure state <-> Params ----------------------------------------------------------------

# The starting image's path (init "image"): set by the server only, from an upload or a run.
INIT_IMAGE_KEY = "init_image_path"


def state_from_params(p: Params) -> dict[str, Any]:
    """Widget values showing `p` (explicit per-layer/per-style weights; 1.0 where unset)."""
    state: dict[str, Any] = {key(f): getattr(p, f) for f in SCALAR_FIELDS}
    state[INIT_IMAGE_KEY] = p.init_image
    state[key("content_layers")] = list(p.content_layers)
    state[key("style_layers")] = list(p.style_layers)
    weights = dict(zip(p.style_layers, p.layer_weights()))
    for layer in LAYERS:
        state[layer_weight_key(layer)] = float(weights.get(layer, 1.0))
    blend = list(p.style_blend)
    for i in range(MAX_STYLES):
        state[blend_key(i)] = float(blend[i]) if i < len(blend) else 1.0
    return state


def _ordered_layers(selected: Any) -> tuple[str, ...]:
    # Multiselect keeps click order; network order makes equal settings compare equal.
    chosen = list(selected or ())
    return tuple(sorted(chosen, key=lambda layer: LAYERS.index(layer) if layer in LAYERS else len(LAYERS)))


def _weights_or_default(values: list[Any]) -> tuple[Any, ...]:
    # All 1.0 is the engine's default ("equal weights"); storing it as () keeps runs that
    # differ only in spelling from looking different in Compare.
    return () if all(v == 1.0 for v in values) else tuple(values)


def params_from_state(state: Mapping[Any, Any], content: str = "", styles: tuple[str, ...] = ()) -> Params:
    """The Params the form currently shows. Values are passed through as typed, unvalidated:
    validation_errors() judges them."""
    values: dict[str, Any] = {f: state[key(f)] for f in SCALAR_FIELDS if key(f) in state}
    for f, kind in SCALAR_FIELDS.items():
        # number_input returns floats for whole numbers typed into a float field and vice versa
        if kind == "int" and isinstance(values.get(f), float) and values[f].is_integer():
            values[f] = int(values[f])
    content_layers = _ordered_layers(state.get(key("content_layers"), Params.content_layers))
    style_layers = _ordered_layers(state.get(key("style_layers"), Params.style_layers))
    layer_weights = [state.get(layer_weight_key(layer), 1.0) for layer in style_layers]
    blend = [state.get(blend_key(i), 1.0) for i in range(len(styles))]
    init_image = state.get(INIT_IMAGE_KEY) or ""
    return Params(
        content=content, styles=tuple(styles), style_blend=_weights_or_default(blend),
        init_image=init_image if values.get("init") == "image" else "",
        content_layers=content_layers, style_layers=style_layers,
        style_layer_weights=_weights_or_default(layer_weights), **values,
    )


def preset_state(name: str) -> dict[str, Any]:
    """Widget values a preset sets. Only the preset's own fields: choosing "high quality"
    should not undo a device or seed someone picked."""
    return {key(f): v for f, v in PRESETS[name].items()}


def changed_from_preset(p: Params, name: str | None) -> list[str]:
    """Fields where `p` departs from the preset (images aside), to say "balanced, modified"."""
    if name not in PRESETS:
        return []
    base = preset(name, content=p.content, styles=p.styles)
    return [f for f in p.to_dict() if getattr(p, f) != getattr(base, f)]


def apply_state(session: MutableMapping[Any, Any], values: Mapping[str, Any]) -> None:
    for k, v in values.items():
        session[k] = v


def init_form(session: MutableMapping[Any, Any]) -> None:
    """Fills in widget state that is missing: from the copy saved on leaving the page, else from
    the default preset. Call before the widgets are drawn."""
    saved = session.get(SAVED_KEY) or {}
    defaults = state_from_params(preset(DEFAULT_PRESET))
    defaults[PRESET_KEY] = DEFAULT_PRESET
    for k, v in {**defaults, **saved}.items():
        if k not in session:
            session[k] = v


def typed_like_defaults(saved: Mapping[str, Any]) -> dict[str, Any]:
    """The form values of `saved` (a kept draft) that have the type their widget takes; the rest
    are left to the defaults."""
    defaults = state_from_params(preset(DEFAULT_PRESET))
    typed: dict[str, Any] = {}
    for k, v in saved.items():
        if k == PRESET_KEY:
            if v is None or v in PRESETS:
                typed[k] = v
        elif k in defaults and _same_kind(v, defaults[k]):
            typed[k] = v
    return typed


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and value == value
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, type(default))


def save_form(session: MutableMapping[Any, Any]) -> None:
    session[SAVED_KEY] = {k: session[k] for k in form_keys() if k in session}


def form_keys() -> list[str]:
    keys = [PRESET_KEY, key("content_layers"), key("style_layers"), INIT_IMAGE_KEY]
    keys += [key(f) for f in SCALAR_FIELDS]
    keys += [layer_weight_key(layer) for layer in LAYERS] + [blend_key(i) for i in range(MAX_STYLES)]
    return keys


FROM_RUN_KEY = "settings_from_run"


def prefill(session: MutableMapping[Any, Any], p: Params, run_id: int | None = None) -> None:
    """Shows `p` in the form ("re-run with these settings"): under its preset's name when it is
    one unchanged (the device and seed aside, which presets leave alone), else as run #id's."""
    apply_state(session, state_from_params(p))
    session[PRESET_KEY] = next((name for name in PRESETS
                                if not set(changed_from_preset(p, name)) - {"device", "seed"}), None)
    session[FROM_RUN_KEY] = run_id
    save_form(session)


# --- widgets ------------------------------------------------------------------------------

def field_error(errors: Mapping[str, str], field: str) -> None:
    if field in errors:
        st.error(escape_md(errors[field]), icon=":material/error:")


def _on_preset() -> None:
    name = st.session_state.get(PRESET_KEY)
    if name in PRESETS:
        apply_state(st.session_state, preset_state(name))


def render_preset() -> None:
    st.segmented_control(
        "Preset", list(PRESETS), key=PRESET_KEY, on_change=_on_preset,
        help="A starting point for size, iterations and previews; fine-tune under Advanced.",
    )


def _random_seed() -> None:
    st.session_state[key("seed")] = secrets.randbelow(2**31)


def _scalar_widget(field: str) -> None:
    kind, k, text, help_ = SCALAR_FIELDS[field], key(field), LABELS[field], HELP.get(field)
    if field == "seed":
        left, right = st.columns([4, 1], vertical_alignment="bottom", gap="small")
        left.number_input(text, key=k, step=1, help=help_)
        right.button("", key="random_seed", icon=":material/casino:", on_click=_random_seed, help="A random seed")
    elif kind == "int":
        st.number_input(text, key=k, step=1, help=help_)
    elif kind == "float":
        st.number_input(text, key=k, step=STEPS.get(field, 0.1), format="%g", help=help_)
    elif kind == "bool":
        st.toggle(text, key=k, help=help_)
    elif field == "weights":
        st.selectbox(text, CHOICES[field], key=k, accept_new_options=True, help=help_)
    else:
        st.selectbox(text, CHOICES[field], key=k, help=help_)


def label(field: str) -> str:
    """A field as the page names it ("Temporal weight"), for messages about it."""
    return LABELS.get(field, field.replace("_", " ").capitalize())


def _init_image() -> None:
    """The image a run starts from ("Start from: image", neural-style's -init_image): uploaded
    here, or a result's ("Make a print" in the Gallery)."""
    from app_pages import inputs  # the Create page's own: the same checks as its other images
    from app_pages.common import get_gallery, input_thumbnail

    gallery = get_gallery()
    version = st.session_state.get("init_upload_version", 0)
    held = st.session_state.get(f"init_file_{version}")
    if held is not None and hasattr(held, "getvalue"):
        try:
            st.session_state[INIT_IMAGE_KEY] = str(gallery.add_input(held.getvalue(), held.name).path)
        except (ValueError, OSError) as exc:  # ImageError, GalleryError: one sentence
            st.session_state["init_error"] = str(exc)
        st.session_state["init_upload_version"] = version + 1
    left, right = st.columns([2, 1])
    left.file_uploader(LABELS["init_image"], type=["png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp"],
                       key=f"init_file_{st.session_state.get('init_upload_version', 0)}", help=HELP["init_image"])
    path = st.session_state.get(INIT_IMAGE_KEY) or ""
    preview = input_thumbnail(path) if path and inputs.offered(gallery, path) else None
    if preview:
        right.image(preview, caption="Starts from this", width="stretch")
    if st.session_state.get("init_error"):
        st.error(escape_md(st.session_state.pop("init_error")), icon=":material/error:")


def render_advanced(errors: Mapping[str, str], style_names: list[str]) -> None:
    """Every engine parameter, grouped; each with the engine's message if it is invalid. In the
    page's own flow: a box that scrolled by itself hid half of them behind an invisible edge."""
    for title, group in GROUPS:
        st.markdown(f"**{title}**")
        cols = st.columns(len(group))
        for col, field in zip(cols, group):
            with col:
                _scalar_widget(field)
                field_error(errors, field)
        if title == "Optimisation" and st.session_state.get(key("init")) == "image":
            _init_image()
            field_error(errors, "init_image")
    st.markdown("**Layers**")
    left, right = st.columns(2)
    with left:
        st.multiselect(LABELS["content_layers"], LAYERS, key=key("content_layers"),
                       help=HELP["content_layers"])
        field_error(errors, "content_layers")
    with right:
        st.multiselect(LABELS["style_layers"], LAYERS, key=key("style_layers"),
                       help=HELP["style_layers"])
        field_error(errors, "style_layers")
    chosen = _ordered_layers(st.session_state.get(key("style_layers")))
    if chosen:
        st.caption("Style layer weights (relative; all 1 = equal)")
        _weight_inputs(errors, "style_layer_weights", [(layer, layer_weight_key(layer)) for layer in chosen], 6)
    if len(style_names) > 1:
        st.markdown("**Style blend**")
        _weight_inputs(errors, "style_blend", [(escape_md(name), blend_key(i)) for i, name in enumerate(style_names)], 4)


def _weight_inputs(errors: Mapping[str, str], field: str, labelled_keys: list[tuple[str, str]],
                   per_row: int) -> None:
    """One relative-weight input per (label, state key), `per_row` to a row, then the field's error."""
    cols = st.columns(min(len(labelled_keys), per_row))
    for i, (label, state_key) in enumerate(labelled_keys):
        with cols[i % len(cols)]:
            st.number_input(label, key=state_key, step=0.1, format="%g", help=HELP[field])
    field_error(errors, field)


def validation_errors(p: Params, need_images: bool = True) -> dict[str, str]:
    """engine.params.validation_errors, plus the shared studio's rule on weights (auth.may_use_weights)."""
    errors = engine_validation_errors(p, need_images)
    if "weights" not in errors and not auth.may_use_weights(p.weights):
        errors["weights"] = f"in a shared studio, one of {', '.join(BUILTIN_WEIGHTS)} (other weights: ask the admin)"
    return errors
