"""The Gradio layout of the web page and its one event: Segment.

Inputs: an image (upload or a built-in example), the classes, the model (a teacher config
with options, or a student checkpoint), the background threshold and sliding windows.
Outputs: a message line (every :class:`~src.errors.UserError` lands there, never a stack
trace), the overlay with its legend, the legend as a list, the class mask, per-class
confidence maps, the time taken and the files of ``src.predict`` as a zip.
"""

from __future__ import annotations

import html
import logging
import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from src.errors import UserError, shorten
from src.web.examples import SHAPE_CLASSES
from src.web.segment import ModelRequest, PageResult, Segmenter

# never phone home: no usage analytics, no version check, no Hugging Face telemetry
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

log = logging.getLogger(__name__)

TITLE = "DenseCLIP: segment any image by typing phrases"
CSS = """
#legend ul {list-style: none; padding: 0; margin: 0}
#legend li {display: flex; align-items: center; gap: 0.5em; margin: 0.15em 0}
#legend .swatch {width: 1.1em; height: 1.1em; border: 1px solid #888; display: inline-block}
#status .error {color: #b00020; font-weight: 600}
#overlay img, #mask img {width: 100%; height: 100%; object-fit: contain}
#mask img {image-rendering: pixelated}
"""


def parse_options(text: str | None) -> tuple[str, ...]:
    """Teacher options typed as ``key=value`` pairs separated by spaces
    (``head=<name> key_smoothing=true``;
    ``teacher.`` before a key is optional); a :class:`UserError` names a malformed one."""
    try:
        words = shlex.split(text or "")
    except ValueError as err:
        raise UserError(
            f"cannot read the teacher options: {err}", "write key=value pairs"
        ) from None
    out = []
    for word in words:
        key, sep, value = word.partition("=")
        key = key.strip().removeprefix("+").removeprefix("teacher.")
        if not sep or not key.replace("_", "").replace(".", "").isalnum():
            raise UserError(
                f"teacher option {word!r} is not key=value",
                "write e.g. key_smoothing=true (keys of conf/teacher/<name>.yaml)",
            )
        out.append(f"{key}={value.strip()}")
    return tuple(out)


def model_request(
    teacher: str | None, head: str | None, options: str | None, ckpt_path: str | None
) -> ModelRequest:
    """The form's model fields as a :class:`ModelRequest` (a checkpoint wins over a teacher)."""
    ckpt = (ckpt_path or "").strip().strip("'\"")
    if ckpt:
        return ModelRequest(teacher=str(teacher or ""), ckpt_path=ckpt)
    if not teacher:
        raise UserError("no teacher chosen", "pick a teacher, or give a student checkpoint")
    extra = parse_options(options)
    if head and not any(o.startswith("head=") for o in extra):
        extra = (f"head={head}", *extra)
    return ModelRequest(teacher=str(teacher), options=tuple(extra))


def legend_html(rows: Sequence[dict[str, Any]]) -> str:
    """The legend as an HTML list: a swatch, the class name and its share of the pixels."""
    items = []
    for row in rows:
        colour = row["color"]
        fill = "transparent" if colour is None else "rgb({}, {}, {})".format(*colour)
        items.append(
            f'<li><span class="swatch" style="background:{fill}"></span>'
            f'<span class="name">{html.escape(row["name"])}</span>'
            f'<span class="share">{100 * row["share"]:.1f}%</span></li>'
        )
    return "<ul>" + "".join(items) + "</ul>"


def check_upload(image: str | None, max_upload_mb: float | None) -> None:
    """An uploaded file above the page's size limit is a :class:`UserError`; a file that is
    not an image comes through as its path and is named by the reader."""
    if not image or max_upload_mb is None or not os.path.isfile(image):
        return
    size = os.path.getsize(image) / 2**20
    if size > max_upload_mb:
        raise UserError(
            f"the uploaded file is {size:.1f} MB, above the page's limit of {max_upload_mb:g} MB",
            "upload a smaller image, or start the page with max_upload_mb=<a larger number>",
        )


def image_input(**kwargs: Any) -> Any:
    """``gradio.Image`` whose uploads that are not images reach the handler as their path
    (Gradio's own reader would fail first and show only "upstream app raised an exception");
    the handler's reader then names the file and the problem."""
    import gradio as gr

    image = gr.Image(**kwargs)  # not a subclass: Gradio writes a .pyi beside any subclass
    read = image.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return read(payload)
        except Exception:  # noqa: BLE001 - not an image: the handler says so
            return getattr(payload, "path", None)

    image.preprocess = preprocess
    return image


def error_html(err: BaseException) -> str:
    if isinstance(err, UserError):
        text = f"Error: {err.problem}" + (f" (fix: {err.fix})" if err.fix else "")
    else:
        text = f"Unexpected error: {type(err).__name__}: {shorten(str(err))}"
    return f'<p class="error">{html.escape(text, quote=False)}</p>'


def handle(
    segmenter: Segmenter,
    image: str | None,
    classes: str | None,
    teacher: str | None,
    head: str | None,
    options: str | None,
    ckpt_path: str | None,
    threshold: float | None,
    sliding_window: bool,
    max_upload_mb: float | None = None,
) -> tuple[Any, ...]:
    """The Segment button: the outputs in the page's order; any error becomes the message.
    ``max_upload_mb``: images larger than this are refused (a message, not a model run)."""
    started = time.perf_counter()
    log.info("request: %s, classes %r, teacher %s, head %s, options %r, checkpoint %s",
             Path(str(image)).name if image else None, classes, teacher, head or "-", options or "",
             ckpt_path or "-")  # fmt: skip
    try:
        check_upload(image, max_upload_mb)
        request = model_request(teacher, head, options, ckpt_path)
        result: PageResult = segmenter.segment(
            image, classes, request, threshold=threshold, sliding_window=sliding_window
        )
    except Exception as err:  # noqa: BLE001 - the page shows one line, the console the trace
        if not isinstance(err, UserError):
            log.exception("the request failed")
        else:
            log.info("request refused: %s", err)
        return (error_html(err), None, "", None, [], "", None)
    log.info("request done in %.1f s: %s", time.perf_counter() - started, result.folder)
    ok = f'<p class="ok">Done: {html.escape(", ".join(result.class_names))}</p>'
    overlay, mask, confidence = page_pictures(result)
    return (ok, overlay, legend_html(result.legend), mask, confidence, result.timing(),
            str(result.files))  # fmt: skip


def page_pictures(result: PageResult) -> tuple[str, str, list[tuple[str, str]]]:
    """The overlay, the coloured mask and the confidence maps as files of this request's own
    (``<requests folder>_page/<request>/``, apart from the request's folder and its zip), for
    the page to show.

    Gradio copies a file it is given into its cache under a temporary name and renames it, but
    writes a picture given as an array or PIL image in place, at a path named by its content:
    two requests with the same picture (the same image and classes at once) could then hand a
    browser a half-written file (seen under load: "Too little data for declared
    Content-Length")."""
    from PIL import Image

    from src.utils.io import atomic_save_image

    folder = Path(f"{result.folder.parent}_page") / result.folder.name
    folder.mkdir(parents=True, exist_ok=True)
    overlay = atomic_save_image(folder / "overlay.png", result.overlay)
    mask = atomic_save_image(folder / "mask.png", Image.fromarray(result.mask))
    maps = [
        (str(atomic_save_image(folder / f"confidence_{i}.png", Image.fromarray(heat))), name)
        for i, (heat, name) in enumerate(result.confidence)
    ]
    return str(overlay), str(mask), maps


def build_page(
    segmenter: Segmenter,
    *,
    teachers: Sequence[str],
    default_teacher: str,
    heads: Sequence[str] | None,
    examples: Sequence[Path],
    default_threshold: float | None = None,
    default_classes: str | None = None,
    default_ckpt: str | None = None,
    default_sliding_window: bool = False,
    max_upload_mb: float | None = None,
) -> Any:
    """The page as ``gradio.Blocks`` (``heads``: ``None`` hides the head choice; the
    ``default_*`` values pre-fill the form)."""
    import gradio as gr

    with gr.Blocks(title=TITLE, analytics_enabled=False) as page:
        gr.Markdown(
            f"## {TITLE}\n"
            "Upload an image (or pick an example below), type the classes to find, press "
            "**Segment**. Classes are separated by commas; to give one class several names, "
            "put one class per line. The shipped `tiny_shapes` teacher knows shapes and "
            "colours (`circle, square, triangle`); CLIP teachers (`rn50`, `vit_b16`, ...) "
            "know everyday phrases once their weights are available."
        )
        with gr.Row():
            with gr.Column(scale=1):
                image = image_input(label="Image", type="filepath",
                                    sources=["upload", "clipboard"], elem_id="image")  # fmt: skip
                classes = gr.Textbox(label="Classes", placeholder=SHAPE_CLASSES, lines=1,
                                     value=default_classes,
                                     elem_id="classes")  # fmt: skip
                with gr.Accordion("Model", open=True):
                    teacher = gr.Dropdown(list(teachers), value=default_teacher,
                                          label="Teacher (conf/teacher)", elem_id="teacher")  # fmt: skip
                    head = gr.Dropdown(
                        list(heads or []), value=None, label="Teacher head (empty: the config's)",
                        visible=bool(heads), elem_id="head",
                    )  # fmt: skip
                    options = gr.Textbox(
                        label="Teacher options (key=value, e.g. key_smoothing=true)",
                        elem_id="options",
                    )
                    ckpt = gr.Textbox(
                        label="Or a student checkpoint (.ckpt path; used instead of the teacher)",
                        value=default_ckpt,
                        elem_id="ckpt",
                    )
                threshold = gr.Slider(
                    0.0, 1.0, value=float(default_threshold or 0.0), step=0.05,
                    label="Background threshold (pixels less sure than this get no class; 0: off)",
                    elem_id="threshold",
                )  # fmt: skip
                sliding = gr.Checkbox(label="Sliding window", value=default_sliding_window,
                                      elem_id="sliding")  # fmt: skip
                run = gr.Button("Segment", variant="primary", elem_id="run")
                if examples:
                    gr.Examples(
                        examples=[[str(p), SHAPE_CLASSES] for p in examples],
                        inputs=[image, classes],
                        label="Examples: scenes of the shapes world",
                    )
            with gr.Column(scale=2):
                status = gr.HTML(elem_id="status")
                overlay = gr.Image(label="Overlay", format="png", interactive=False,
                                   height=360, elem_id="overlay")  # fmt: skip
                legend = gr.HTML(elem_id="legend")
                timing = gr.Markdown(elem_id="timing")
                with gr.Row():
                    mask = gr.Image(label="Class mask", format="png", interactive=False,
                                    height=240, elem_id="mask")  # fmt: skip
                    files = gr.File(label="Files (as python -m src.predict writes them)",
                                    elem_id="files")  # fmt: skip
                gallery = gr.Gallery(label="Confidence per class", format="png", columns=4,
                                     height="auto", elem_id="confidence")  # fmt: skip

        def on_run(*values: Any) -> tuple[Any, ...]:
            return handle(segmenter, *values, max_upload_mb=max_upload_mb)

        run.click(
            on_run,
            inputs=[image, classes, teacher, head, options, ckpt, threshold, sliding],
            outputs=[status, overlay, legend, mask, gallery, timing, files],
            api_name="segment",
            # a click while the page still counts the last request as open runs after it
            # (Gradio's default, "once", drops it)
            trigger_mode="always_last",
        )
    return page


def launch(
    page: Any,
    *,
    host: str,
    port: int,
    allowed_paths: Sequence[str | Path],
) -> None:
    """Serve the page on ``host:port`` until interrupted (no share link, no telemetry)."""
    import gradio as gr

    theme = gr.themes.Default(  # system fonts: the page loads nothing from the internet
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "monospace"],
    )
    try:
        page.queue(default_concurrency_limit=1).launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            ssr_mode=False,
            mcp_server=False,
            enable_monitoring=False,
            allowed_paths=[str(p) for p in allowed_paths],
            theme=theme,
            css=CSS,
            show_error=False,
            quiet=False,
        )
    except KeyboardInterrupt:  # Ctrl-C while Gradio still starts up (after, it closes itself)
        page.close()
