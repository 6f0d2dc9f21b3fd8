"""Turns the measurements into the markdown table, the target checks and the bytes-vs-turns plot."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from bench.phases import ConversationResult, ListingResult, median
from bench.timing import p99_ms
from bench.workload import SAVES_PER_TURN

WINDOW = 20  # turns per "save median around turn N" window


@dataclasses.dataclass
class Column:
    label_id: str
    label: str
    backend: str
    ours: bool
    run: ConversationResult
    listing: ListingResult | None


def window_saves(saves: list[float], around_turn: int, last_turn: int) -> list[float]:
    """Saves of the WINDOW turns around `around_turn` (or the last WINDOW turns for the last turn)."""
    first = last_turn - WINDOW + 1 if around_turn >= last_turn else max(1, around_turn - WINDOW // 2 + 1)
    turns = range(first, min(last_turn, first + WINDOW - 1) + 1)
    return saves[(turns[0] - 1) * SAVES_PER_TURN: turns[-1] * SAVES_PER_TURN]


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.2f} ms"


def size(n: int, raw: int) -> str:
    return f"{n / 1e6:,.2f} MB ({n / raw:,.1f}x)"


def table(columns: list[Column], raw_at: dict[int, int], early: int, page: int, count: int) -> str:
    last = max(raw_at)
    head = "| | " + " | ".join(f"{c.label}<br>({c.backend})" for c in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]

    def row(name: str, cell) -> None:  # noqa: ANN001 - a function of a Column
        lines.append(f"| {name} | " + " | ".join(cell(c) for c in columns) + " |")

    for turns, raw in sorted(raw_at.items()):
        row(f"Stored after VACUUM, {turns:,} turns (raw text {raw / 1e6:.2f} MB)", lambda c, t=turns, r=raw: size(c.run.bytes_at[t], r))
    row("Save median, all steps", lambda c: ms(median(c.run.saves)))
    row("Save p99, all steps", lambda c: f"{p99_ms(c.run.saves):.2f} ms")
    row(f"Save median, turns around {early:,}", lambda c: ms(median(window_saves(c.run.saves, early, last))))
    row(f"Save median, last {WINDOW} turns (to {last:,})", lambda c: ms(median(window_saves(c.run.saves, last, last))))
    row("Load latest snapshot, median", lambda c: ms(median(c.run.load_latest)))
    row("Load middle snapshot, median", lambda c: ms(median(c.run.load_middle)))
    row("Load latest, persister's cache emptied first, median", lambda c: ms(median(c.run.load_latest_cold)))
    row("Load middle, persister's cache emptied first, median", lambda c: ms(median(c.run.load_middle_cold)))
    row("Loaded state equals the others'", lambda c: "yes" if c.run.same_state else "NO")
    row(f"List newest {page} of {count:,} conversations, median", lambda c: ms(median(c.listing.seconds)) if c.listing else "n/a")
    row("Listing call returned rows / distinct in first page / page is the newest, in order",
        lambda c: f"{c.listing.rows_returned:,} / {c.listing.distinct_in_page} / {'yes' if c.listing.page_is_newest else 'no'}"
        if c.listing else "n/a")
    row(f"Time: {last:,}-turn run / VACUUMs / seeding {count:,} conversations (concurrently)",
        lambda c: f"{c.run.run_seconds:.0f} s / {c.run.vacuum_seconds:.0f} s / {c.listing.seed_seconds:.0f} s" if c.listing
        else f"{c.run.run_seconds:.0f} s / {c.run.vacuum_seconds:.0f} s")
    return "\n".join(lines)


def check_targets(columns: list[Column], raw_at: dict[int, int], early: int) -> list[tuple[str, bool, str]]:
    """(target, met?, the numbers) for each target of issue 4, as ratios within this run."""
    last = max(raw_at)
    by = {(c.ours, c.backend): c for c in columns}
    burr_sqlite = by.get((False, "SQLite"))
    out = []
    for ours in (c for c in columns if c.ours):
        tag = ours.backend
        ratio = ours.run.bytes_at[last] / raw_at[last]
        out.append((f"{tag}: stored bytes at {last:,} turns <= 3x raw", ratio <= 3, f"{ratio:.2f}x"))
        late = median(window_saves(ours.run.saves, last, last))
        flat = late / median(window_saves(ours.run.saves, early, last))
        out.append((f"{tag}: save median at turn {last:,} flat vs turn {early:,} (<= 1.5x)", flat <= 1.5, f"{flat:.2f}x"))
        if burr_sqlite:
            burr_late = median(window_saves(burr_sqlite.run.saves, last, last))
            out.append((f"{tag}: save median at turn {last:,} <= 1/5 of Burr SQLitePersister's", late <= burr_late / 5,
                        f"{ms(late)} vs {ms(burr_late)} (1/{burr_late / late:.0f})"))
            burr_load = median(burr_sqlite.run.load_latest)
            for name, samples in (("latest", ours.run.load_latest), ("middle", ours.run.load_middle),
                                  ("latest, cache emptied first,", ours.run.load_latest_cold),
                                  ("middle, cache emptied first,", ours.run.load_middle_cold)):
                mine = median(samples)
                out.append((f"{tag}: load {name} <= Burr SQLitePersister's load-latest", mine <= burr_load,
                            f"{ms(mine)} vs {ms(burr_load)}"))
        out.extend(_listing_target(ours, by.get((False, ours.backend))))
    return out


def like_for_like(columns: list[Column], raw_at: dict[int, int]) -> list[str]:
    """Burrow vs Burr on the same database, for each backend (the issue compares with Burr SQLite only)."""
    last = max(raw_at)
    lines = []
    for ours in (c for c in columns if c.ours):
        burr = next((c for c in columns if not c.ours and c.backend == ours.backend), None)
        if burr is None:
            continue
        pairs = [("save median, last turns", median(window_saves(ours.run.saves, last, last)),
                  median(window_saves(burr.run.saves, last, last))),
                 ("load latest", median(ours.run.load_latest), median(burr.run.load_latest)),
                 ("load middle", median(ours.run.load_middle), median(burr.run.load_middle)),
                 ("load latest cold", median(ours.run.load_latest_cold), median(burr.run.load_latest_cold))]
        text = ", ".join(f"{name} {ms(a)} vs {ms(b)} ({a / b:.2f}x)" for name, a, b in pairs)
        lines.append(f"- {ours.backend}: Burrow vs {burr.label}: stored {ours.run.bytes_at[last] / raw_at[last]:.1f}x "
                     f"vs {burr.run.bytes_at[last] / raw_at[last]:,.0f}x raw; {text}")
    return lines


def _listing_target(ours: Column, burr: Column | None) -> list[tuple[str, bool, str]]:
    if not (ours.listing and burr and burr.listing):
        return []
    mine, theirs = median(ours.listing.seconds), median(burr.listing.seconds)
    correct = ours.listing.page_is_newest and ours.listing.distinct_in_page == ours.listing.rows_returned
    return [(f"{ours.backend}: list newest page <= 1/20 of Burr's list_app_ids, distinct and in order",
             mine <= theirs / 20 and correct, f"{ms(mine)} vs {ms(theirs)} (1/{theirs / mine:.0f}), correct: {correct}")]


def plot(columns: list[Column], raw_at: dict[int, int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    turns = sorted(raw_at)
    figure, axes = pyplot.subplots(figsize=(7.5, 4.5), dpi=110)
    for column in columns:
        style = "-" if column.ours else "--"
        axes.plot(turns, [column.run.bytes_at[t] for t in turns], style, marker="o", label=column.label_id)
    axes.plot(turns, [raw_at[t] for t in turns], ":", color="black", label="raw message text")
    axes.set_yscale("log")
    axes.set_xlabel("conversation length (turns)")
    axes.set_ylabel("bytes on disk after VACUUM")
    axes.set_title("Stored bytes vs conversation length")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
