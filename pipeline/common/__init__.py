"""Parts every recipe may use and that know nothing of batches: the LLM client and its JSON caller
(capability ladder), ffmpeg (one locator, one runner), transcript and caption formats, hardware
readings, units, refused input lines."""
