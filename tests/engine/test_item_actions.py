"""One item by hand: retry now, skip, remove — from the owner and from a follower, through the real engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import errors
from pipeline.engine.core import Engine
from state.reader import read_batch
from tests.conftest import fast_settings, wait_for


def finished(e: Engine, bid: str) -> bool:
    return e.store is not None and e.store.header(bid)["state"] == "done"


def test_retry_skip_and_remove(tmp_path: Path) -> None:
    """A failed item retried by hand runs again and finishes once its cause is gone; a failed one skipped lets
    the batch finish; a removed item leaves the batch (and its file on disk) while its folder stays."""
    flag = tmp_path / "broken"
    flag.write_text("x")
    with Engine(tmp_path / "home", settings=fast_settings()) as e:
        bid = e.submit("b", ["ep1", f"ep2 failif={flag}@probe_cpu", "ep3 perm@probe_gpu", "ep4 perm@probe_net"],
                       recipe="probe")
        wait_for(lambda: finished(e, bid))
        status = {it["n"]: it["status"] for it in e.items(bid)}
        assert status == {1: "done", 2: "failed", 3: "failed", 4: "failed"}
        workdir3 = Path(e.items(bid)[2]["workdir"])

        with pytest.raises(errors.TubemillError, match="nothing to retry"):
            e.item_action(bid, 1, "retry")
        flag.unlink()
        e.item_action(bid, 2, "retry")
        wait_for(lambda: e.store is not None and e.store.item(bid, 2)["status"] == "done")
        e.item_action(bid, 3, "skip")
        e.item_action(bid, 4, "remove")
        wait_for(lambda: finished(e, bid))
        assert {it["n"]: it["status"] for it in e.items(bid)} == {1: "done", 2: "done", 3: "skipped"}
        assert "skipped by hand" in (workdir3 / "log.txt").read_text()
        with pytest.raises(errors.TubemillError, match="no item 4"):
            e.item_action(bid, 4, "skip")
        with pytest.raises(errors.TubemillError, match="already skipped"):
            e.item_action(bid, 3, "skip")
        with pytest.raises(errors.ConfigError, match="unknown item action"):
            e.item_action(bid, 1, "frobnicate")
    header, items = read_batch(tmp_path / "home", bid)  # what the store wrote survives a restart
    assert [it["n"] for it in items] == [1, 2, 3] and header["state"] == "done"


def test_follower_asks_the_owner(tmp_path: Path) -> None:
    """A second engine on the same home (the CLI beside the app) posts the action to the owner, which applies it."""
    home = tmp_path / "home"
    with Engine(home, settings=fast_settings()) as owner:
        bid = owner.submit("b", ["ep1 perm@probe_cpu", "ep2"], recipe="probe")
        wait_for(lambda: finished(owner, bid))
        with Engine(home, settings=fast_settings()) as follower:
            assert not follower.owner
            follower.item_action(bid, 1, "skip")
            with pytest.raises(errors.TubemillError, match="already done"):
                follower.item_action(bid, 2, "skip")
        assert owner.store is not None and owner.store.item(bid, 1)["status"] == "skipped"


def test_retry_now_cuts_a_backoff_short(tmp_path: Path) -> None:
    """An item waiting out a 10 s backoff runs at once when retried by hand."""
    with Engine(tmp_path / "home", settings=fast_settings()) as e:
        bid = e.submit("b", ["ep1 fail=1@probe_cpu"], recipe="probe")
        wait_for(lambda: e.store is not None and e.store.item(bid, 1)["status"] == "waiting")
        e.item_action(bid, 1, "retry")
        wait_for(lambda: finished(e, bid), timeout=5)
        assert e.items(bid)[0]["status"] == "done"


def test_finished_manifest_records_the_final_state(tmp_path: Path) -> None:
    """manifest.json is written just before the batch is marked done: it says done, not active."""
    import json

    with Engine(tmp_path / "home", settings=fast_settings()) as e:
        bid = e.submit("b", ["ep1", "ep2"], recipe="probe")
        wait_for(lambda: finished(e, bid))
        folder = Path(e.summary(bid).output_dir)
    assert json.loads((folder / "manifest.json").read_text())["batch"]["state"] == "done"
