"""Start-up signature checks before numpy and LiteRT are imported.

The signature child (``agent.signature``) costs about 19 MB while it lives. Asked once the agent
has imported numpy and LiteRT, the two together would top the agent's own running peak; asked
here, from the config file read with ``tomllib`` alone, it sits beside a process of ~15 MB.
This only fills the verifier's memory of answers: the agent then checks every bundle as
always, and an answer is reused only for the very same keys, signature and manifest. Anything
unreadable here is skipped without a word; the real checks report it.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

from agent.bundle_archive import DEFAULT_MAX_BUNDLE_BYTES, BundleError, open_archive
from agent.keys import raw_public_key
from agent.signature import ChildVerifier

logger = logging.getLogger(__name__)


def _bundles(raw: dict[str, Any]) -> list[Path]:
    """The configured and saved bundle files of the enabled models."""
    agent = raw.get("agent", {})
    state_dir = agent.get("state_dir") if isinstance(agent, dict) else None
    found: list[Path] = []
    for model in raw.get("models", []):
        if not isinstance(model, dict) or model.get("enabled", True) is False:
            continue
        if isinstance(model.get("bundle"), str):
            found.append(Path(model["bundle"]))
        if isinstance(state_dir, str) and isinstance(model.get("name"), str):
            found.append(Path(state_dir) / "models" / f"{model['name']}.bundle")
    return found


def preverify(config_path: str | Path, verify: ChildVerifier) -> None:
    """Check the signatures of the bundles ``config_path`` names, remembering the answers."""
    try:
        raw = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
        agent = raw.get("agent", {})
        keys = [raw_public_key(Path(path).read_bytes()) for path in agent.get("trusted_keys", [])]
        limit = agent.get("max_bundle_bytes", DEFAULT_MAX_BUNDLE_BYTES)
        bundles = _bundles(raw)
    except (OSError, ValueError, TypeError, AttributeError, RecursionError):
        return
    if not keys or type(limit) is not int:
        return
    for path in bundles:
        try:
            archive = open_archive(path, limit)
            try:
                if archive.signature is not None and len(archive.signature) == 64:
                    verify(keys, archive.signature, archive.manifest_bytes)
            finally:
                archive.close()
        except (BundleError, OSError, ValueError) as exc:
            logger.debug("pre-check of %s skipped: %s", path, exc)
