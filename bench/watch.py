"""One check round of 200 subscriptions on loopback: how many requests and how many seconds.

200 YouTube channel subscriptions, each answered by a loopback Atom feed of 15 entries. Three rounds:
the first (every feed fetched and its entries marked seen), a second with every feed unchanged
(conditional GET: 304s with no body), and a third after 10 channels gained one video (their items
submitted to the noop recipe's rolling batches). The last line is JSON.

    .venv/bin/python bench/watch.py [--subs 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import os  # noqa: E402

from pipeline.engine.core import Engine  # noqa: E402
from pipeline.watch import subs  # noqa: E402
from pipeline.watch.service import WatchService  # noqa: E402
from tests.watch.conftest import answer_feed  # noqa: E402


def serve(videos: dict[str, list[str]], hits: list[str]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            key = parse_qs(urlsplit(self.path).query)["channel_id"][0]
            hits.append(key)
            ids = videos[key]
            body = ('<feed xmlns="http://www.w3.org/2005/Atom" xmlns:yt="http://www.youtube.com/xml/schemas/2015">'
                    + "".join(f"<entry><yt:videoId>{v}</yt:videoId><title>{v}</title></entry>" for v in ids)
                    + "</feed>").encode()
            answer_feed(self, body, f'"{len(ids)}-{ids[0]}"')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subs", type=int, default=200)
    n = ap.parse_args().subs
    videos = {f"UC{i:022d}": [f"c{i}v{j}" for j in range(15, 0, -1)] for i in range(n)}
    hits: list[str] = []
    server = serve(videos, hits)
    os.environ["TUBEMILL_YOUTUBE_FEEDS"] = f"http://127.0.0.1:{server.server_address[1]}/feeds/videos.xml"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        for key in videos:
            subs.add(home, f"https://www.youtube.com/channel/{key}", every_s=1800, recipe="noop")
        engine = Engine(home, role="bench watch")
        engine.start()
        svc = WatchService(engine)
        rounds = {}
        try:
            for label, change in (("first", 0), ("unchanged", 0), ("ten_new", 10)):
                for key in list(videos)[:change]:
                    videos[key].insert(0, f"{key}-new")
                before = len(hits)
                r = svc.run_round(now=time.time() + 3600 * len(rounds))
                rounds[label] = {"checked": r["checked"], "new": r["new"], "requests": len(hits) - before,
                                 "seconds": round(r["seconds"], 3), "errors": r["errors"]}
                print(f"{label}: {rounds[label]}", file=sys.stderr)
        finally:
            engine.shutdown(interrupt=True, timeout=10)
            server.shutdown()
    print(json.dumps({"bench": "watch", "subscriptions": n, "requests_per_round": rounds["unchanged"]["requests"],
                      "seconds_per_round": rounds["unchanged"]["seconds"], "rounds": rounds}))


if __name__ == "__main__":
    main()
