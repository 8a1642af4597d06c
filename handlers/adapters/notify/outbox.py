"""A local folder outbox: each message as a .json (the webhook body) and an .eml (the email).

For `amlevents demo` and local runs: a sink anyone can open. File names come from the message
id, so a redelivered message overwrites its file instead of adding a second one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from handlers.errors import RetryableError
from handlers.notify.message import Message, as_email, as_webhook
from handlers.notify.settings import (
    ACS_CONNECTION_STRING,
    ACS_ENDPOINT,
    OUTBOX_DIR,
    RULES,
    SLACK_URL,
    SMTP_HOST,
    TEAMS_URL,
    WEBHOOK_SECRET,
    WEBHOOK_URL,
)

# Blank (not absent) so they also override values already in os.environ.
_OTHER_CHANNELS = (SMTP_HOST, ACS_ENDPOINT, ACS_CONNECTION_STRING, TEAMS_URL, SLACK_URL,
                   WEBHOOK_URL, WEBHOOK_SECRET, RULES)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class OutboxChannel:
    """Writes messages into a folder."""

    name = "outbox"

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def send(self, message: Message) -> str:
        """Write the .json and .eml files atomically; the .json file's name."""
        stem = _UNSAFE.sub("_", f"{message.kind}-{message.id}")[:120]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write(self.folder / f"{stem}.eml",
                   bytes(as_email(message, "amlevents@localhost", ("outbox@localhost",))))
            _write(self.folder / f"{stem}.json",
                   json.dumps(as_webhook(message), indent=2).encode("utf-8"))
        except OSError as exc:
            raise RetryableError(f"outbox: {type(exc).__name__}: {exc.strerror}") from None
        return f"wrote {stem}.json"


def _write(path: Path, content: bytes) -> None:
    # Write then rename: a reader never sees half a message.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def local_only(env: Mapping[str, str], folder: str) -> dict[str, str]:
    """`env` with notifications on and every channel replaced by an outbox (for the demo)."""
    return {**env, **dict.fromkeys(_OTHER_CHANNELS, ""), OUTBOX_DIR: folder,
            "AMLEVENTS_DRY_RUN_NOTIFY": "false"}


def summarize(folder: str) -> list[str]:
    """One line per message in an outbox: file, kind, title and link."""
    lines = []
    for path in sorted(Path(folder).glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        if body.get("kind") == "digest":
            lines.append(f"{path.name}: digest of {body['digest']['total']} held back")
            continue
        summary = body.get("summary", {})
        lines.append(f"{path.name}: {summary.get('title')}")
        if summary.get("link"):
            lines.append(f"    {summary['link']}")
    return lines
