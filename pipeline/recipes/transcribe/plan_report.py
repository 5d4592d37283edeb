"""``tubemill plan``'s report: the text summary and the buffer/progress chart of a simulated batch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.recipes.transcribe.plan import PlanResult

DAY = 86400.0


def format_report(r: PlanResult) -> list[str]:
    d = r.to_dict()
    out = [
        f"{d['videos']:,} videos, {d['accounts'] or 'anonymous'} account(s) at {d['delay_s'][0]:.0f}-"
        f"{d['delay_s'][1]:.0f} s, {d['transcribe_workers']} transcription worker(s), queue-aware pacing "
        f"{'on' if d['queue_aware'] else 'off'}",
        f"stage model ({r.spec.model.source}): {r.spec.model.audio_minutes:g} min audio, transcribe "
        f"{r.spec.model.seconds('transcribe'):.0f} s/item (rtf {r.spec.model.transcribe_rtf:.3g}), download "
        f"{r.spec.model.download_s:.0f} s, summarize {r.spec.model.summarize_s:.0f} s",
        f"makespan: {d['makespan_days']:.2f} days (finish {d['finish']} UTC); downloads done after "
        f"{d['downloads_days']:.2f} days",
    ]
    if d["pacing_arithmetic_days"]:
        out.append(f"pacing arithmetic (videos x mean delay / accounts): {d['pacing_arithmetic_days']:.2f} days")
    util = ", ".join(f"{k} {v:.0%}" for k, v in sorted(r.utilization.items(), key=lambda kv: -kv[1]))
    out.append(f"utilization: {util}")
    what = "download pacing (add accounts)" if r.bottleneck == "download" else (
        f"{r.bottleneck} (add workers or a faster model)")
    out.append(f"bottleneck: {what}; largest download buffer {d['max_buffer_seen']} item(s)")
    out.append(f"(simulated {r.ticks:,} scheduler passes in {r.sim_seconds:.1f} s)")
    return out


def plot(r: PlanResult, path: Path) -> Path:
    """Buffer size and progress over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax1.plot([t / DAY for t, _ in r.buffer], [b for _, b in r.buffer], drawstyle="steps-post")
    ax1.set_ylabel("downloaded, not transcribed")
    ax1.set_title(f"{r.spec.videos:,} videos, {r.spec.accounts} account(s): {r.makespan_s / DAY:.2f} days, "
                  f"bottleneck {r.bottleneck}")
    ax2.plot([t / DAY for t, _, _ in r.progress], [d for _, d, _ in r.progress], label="downloaded")
    ax2.plot([t / DAY for t, _, _ in r.progress], [f for _, _, f in r.progress], label="finished")
    ax2.set_xlabel("days")
    ax2.set_ylabel("items")
    ax2.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
