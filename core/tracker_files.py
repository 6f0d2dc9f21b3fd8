"""Burr's local tracker files of a conversation, removed when the conversation is deleted.

Burr's `LocalTrackingClient` writes one folder per run (app id) under `<storage dir>/<project>/`:
`log.jsonl`, `graph.json`, `metadata.json` (which names the run's partition key) and, for a run
that was forked, `children.jsonl`. Burrow's conversation is the partition key and each branch an
app id (core/app.py), so deleting a conversation removes those folders, and Burr's UI no longer
lists it. A folder whose metadata names another partition key is left alone: it is not this
conversation's, whatever its name.
"""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from burr.tracking.client import LocalTrackingClient

log = logging.getLogger(__name__)


def project_dir(tracker_dir: str | None, project: str) -> Path:
    """Where Burr keeps a project's runs (`tracker_dir` None: Burr's default, ~/.burr)."""
    return Path(LocalTrackingClient.get_storage_path(project, tracker_dir or LocalTrackingClient.DEFAULT_STORAGE_DIR))


def delete_tracker_runs(tracker_dir: str | None, project: str | None, partition_key: str,
                        app_ids: Iterable[str]) -> int:
    """Removes the tracker folders of these runs of `partition_key`; returns how many were removed.

    `project` None means tracking is off: nothing to remove. A run that was never tracked (tracking
    switched on later, another server's tracker folder) is simply not there.
    """
    if not project:
        return 0
    root = project_dir(tracker_dir, project).resolve()
    removed = 0
    for app_id in app_ids:
        folder = (root / app_id).resolve()
        if folder.parent != root or not folder.is_dir():  # an id with a slash or "..": never outside the project
            continue
        if _partition_key(folder) not in (partition_key, None):
            log.warning("Tracker folder %s belongs to another conversation; not removed", folder)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += not folder.exists()
    return removed


def _partition_key(folder: Path) -> str | None:
    """The partition key the run's metadata names (None when it has no readable metadata)."""
    try:
        metadata = json.loads((folder / LocalTrackingClient.METADATA_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metadata.get("partition_key") if isinstance(metadata, dict) else None
