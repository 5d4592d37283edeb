"""The generate recipe as the engine sees it."""

from __future__ import annotations

from pipeline.engine.estimator import Cost
from pipeline.engine.recipe import Recipe
from pipeline.recipes.generate import outputs
from pipeline.recipes.generate.options import parse_options
from pipeline.recipes.generate.report import REPORT
from pipeline.recipes.generate.stages import (  # noqa: F401
    frames,
    master,
    narrate,
    render,
    script,
    subtitles,
    upload,
    visuals,
)

RECIPE = Recipe(
    "generate",
    ("script", "plan", "visuals", "narrate", "frames", "subtitles", "encode", "master", "render", "metadata",
     "upload", "extras"), False,
    "topics → script → narration ∥ stock visuals → frames → subtitles → video → metadata → YouTube", topics=True,
    parse_options=parse_options,
    # Narration and the stock visuals need only the plan: they run at once (a provider's round trips
    # hide behind the speech synthesis); frames draw over the visuals, metadata credits them. The scene
    # times narrate writes are all the video encode needs, so the loudness pass (master) runs beside it.
    # master needs only narrate's clips, but an item's stages that start together also finish together,
    # so it waits for subtitles (milliseconds) to start with the encode rather than beside subtitles.
    # extras (thumbnail, playlist) after the upload: refused extras never send the video again.
    needs={"visuals": ("plan",), "narrate": ("plan",), "frames": ("plan", "visuals"), "subtitles": ("narrate",),
           "encode": ("frames", "subtitles"),
           "master": ("subtitles",), "render": ("encode", "master"), "metadata": ("script", "visuals"),
           "upload": ("render", "metadata"), "extras": ("upload",)},
    # Measured with bench/generate.py on 2 cores, per second of video (offline script, espeak-ng, libx264).
    # visuals: media_provider=none costs nothing; a provider, cold cache, on loopback (bench P12).
    costs={"script": Cost(1.0), "plan": Cost(0.1), "visuals": Cost(0.5, 0.01), "narrate": Cost(0.2, 0.012),
           "frames": Cost(0.2, 0.01),
           "subtitles": Cost(0.1), "encode": Cost(0.2, 0.055), "master": Cost(0.2, 0.055), "render": Cost(0.3, 0.002),
           "metadata": Cost(0.1), "upload": Cost(5.0, 0.05), "extras": Cost(1.0)},
    # The batch ZIP (videos, subtitles, thumbnails, metadata) and what the manifest and errors.md add.
    outputs=outputs.outputs, report=REPORT,
    # Items whose custom thumbnail or playlist insert was refused run the extras stage again, never the upload.
    actions={"retry_extras": upload.RETRY_EXTRAS},
)
