"""AppTest of clips in the UI: a GIF as the content upload with its frame count, length and an
estimate that counts the frames; "frame k of n" in the job panel and the Queue; the Gallery's
grid marks the run, its detail view plays the animation, scrubs frames and offers WebP and GIF."""
from __future__ import annotations

import base64
import io
import re

from PIL import Image

from engine.clips import gif_bytes, read_clip
from harness.paths import STYLE
from support.app import app, assert_ok, play_worker, shown, small_params, uploader
from support.images import pan
from support.runs import finished_clip_run

DURATIONS = (90, 110, 130)


def stored_gif(g) -> str:
    return str(g.add_input(gif_bytes(pan(3, DURATIONS)), "pan.gif", "content").path)


def test_a_gif_upload_shows_its_frames_and_an_estimate_that_counts_them(studio):
    studio.submit(small_params(), owner="maker001")
    play_worker(studio, until="done")  # 0.3 s for 10 iterations at 64 px: this machine's speed
    at = app()
    uploader(at, "content").set_value(("pan.gif", gif_bytes(pan(3, DURATIONS)), "image/gif"))
    at.run()
    uploader(at, "style").set_value([(STYLE.name, STYLE.read_bytes(), "image/jpeg")])
    at.run()
    assert_ok(at)
    assert "▶ 3 frames · 0.3 s" in [c.value for c in at.caption]
    at.number_input(key="p_size").set_value(64)
    at.number_input(key="p_iterations").set_value(10)
    at.segmented_control(key="preset").set_value("draft")  # single scale, as the measured run
    at.run()
    at.number_input(key="p_size").set_value(64)
    at.number_input(key="p_iterations").set_value(10)
    at.number_input(key="p_frame_iterations").set_value(40)
    at.run()
    # The still run: 0.1 s fixed, 0.2 s optimising 10 iterations. Frames 2 and 3: 40 each at the
    # same size, so 9 times the optimising: 1.9 s, said as a range (from one run: ±50 %).
    line = next(c.value for c in at.caption if c.value.startswith("Estimated time"))
    assert line.startswith("Estimated time: 0–3 s") and "A clip of 3 frames" in line, line


def test_the_job_panel_and_the_queue_say_which_frame(studio):
    rid = studio.submit(small_params(content=stored_gif(studio), frame_iterations=5), owner="maker001")
    studio.claim(rid, "test-worker")
    studio.record_frame(rid, 0, Image.new("RGB", (64, 48), "teal"))
    studio.record_progress(rid, 2, 5, {"total": 3.0, "content": 1.0, "style": 1.0, "tv": 0.5, "temporal": 0.5},
                           frame=2)
    at = app(owner="maker001", run=str(rid))
    assert_ok(at)
    assert any(p.proto.text == "Frame 2 of 3 · iteration 2 of 5" for p in at.get("progress"))
    assert at.image[-1].captions == ["Frame 1 of 3, finished"]  # the newest finished frame, not frame 1's preview
    # Five losses with the temporal term, one row each (weighted: 0.5 × the temporal weight 1e4).
    assert any(m.value.startswith("| loss | weighted |") and m.value.endswith("| temporal | 5000 |") for m in at.markdown)
    assert any("▶ 3 frames" in c.value for c in at.caption)
    at = app("app_pages/queue.py", owner="maker001")
    assert any(p.proto.text.startswith("Running · frame 2/3 · 2/5 · ETA") for p in at.get("progress"))
    assert any("▶ 3 frames · 64 px" in c.value for c in at.caption)


def webp_in(html: str) -> Image.Image:
    data = re.search(r'src="data:image/webp;base64,([^"]+)"', html).group(1)
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_the_gallery_marks_plays_and_scrubs_a_clip(studio):
    rid = finished_clip_run(studio, DURATIONS)
    at = app("app_pages/gallery.py")
    assert_ok(at)
    assert any(c.value.startswith("▶ 3 frames · 64 px") for c in at.caption)
    at = app("app_pages/gallery.py", run=str(rid))
    assert_ok(at)
    animation = webp_in(next(h.proto.body for h in at.get("html")))
    assert animation.n_frames == 3 and animation.size == (64, 48)
    assert "▶ 3 frames · 0.3 s" in [c.value for c in at.caption]
    assert at.slider(key=f"frame-{rid}").value == 1 and at.image[0].captions == ["Frame 1 of 3"]
    at.slider(key=f"frame-{rid}").set_value(3).run()
    assert at.image[0].captions == ["Frame 3 of 3"]
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"Download animation (WebP)", "Download GIF", "Download PNG (first frame)"} <= labels
    assert read_clip(studio.get(rid).gif_path).durations_ms == list(DURATIONS)


def test_a_damaged_video_upload_is_refused_in_a_sentence(studio, tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "pan.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 72))
    for frame in pan(4).frames:
        writer.write(cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()
    at = app()
    uploader(at, "content").set_value(("cut.mp4", path.read_bytes()[:2000], "video/mp4"))
    at.run()
    assert_ok(at)
    assert any("cut.mp4" in shown(e.value) and ("damaged" in e.value or "could not be opened" in e.value) for e in at.error)
    assert at.session_state["content_chosen"] == [] and studio.list_inputs() == []
    uploader(at, "content").set_value(("pan.mp4", path.read_bytes(), "video/mp4"))
    at.run()
    assert_ok(at)
    assert "▶ 4 frames · 0.4 s" in [c.value for c in at.caption] and not at.error


def test_a_clip_as_a_style_is_refused_and_the_header_tells_frames_apart(studio):
    """Issue 32, finding 10: an animated GIF was taken as a style (styles are stills), and the job's
    header said "20 iterations" while later frames ran 10."""
    at = app()
    uploader(at, "style").set_value([("moving.gif", gif_bytes(pan(3, DURATIONS)), "image/gif")])
    at.run()
    assert_ok(at)
    assert any("A style is a still image" in shown(e.value) for e in at.error)
    assert at.session_state["style_chosen"] == []
    rid = studio.submit(small_params(content=stored_gif(studio), frame_iterations=5), owner="maker001")
    at = app(owner="maker001", run=str(rid))
    assert any("10 iterations (first frame), 5 a frame after" in c.value for c in at.caption)


def test_each_frame_of_a_clip_can_be_downloaded(studio):
    rid = finished_clip_run(studio)
    at = app("app_pages/gallery.py", run=str(rid))
    assert_ok(at)
    at.slider(key=f"frame-{rid}").set_value(2).run()
    download = next(d for d in at.get("download_button") if d.proto.label.startswith("Download frame"))
    assert download.proto.label == "Download frame 2 (PNG)"


def test_a_result_larger_than_its_content_says_so(studio):
    """Before: a 96 px clip became a 128 px result without a word."""
    from app_pages.create import upscale_line

    small = studio.add_input(gif_bytes(pan(3, DURATIONS)), "small.gif", "content")  # 96 px wide
    line = upscale_line(studio, small_params(content=str(small.path), size=128))
    assert line.startswith("The content is 96 px on its longest side: the 128 px result is stretched")
    assert upscale_line(studio, small_params(content=str(small.path), size=96)) == ""
