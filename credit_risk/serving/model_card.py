"""The model card: what is being served, and where each choice of model came from."""

from __future__ import annotations

from typing import Any

from credit_risk.promotion import ServedTags


def model_card(champion: Any, challenger: Any | None, served: ServedTags) -> dict[str, Any]:
    """Tag, creation time, labels and metadata (threshold, scaling, metrics, features) of the
    champion (BentoML model infos), and of the challenger scored in shadow beside it, or null."""
    return {
        **_card(champion),
        "served_from": served.champion_source,
        "challenger": _card(challenger) if challenger else None,
        "challenger_served_from": served.challenger_source,
    }


def _card(info: Any) -> dict[str, Any]:
    return {
        "tag": str(info.tag),
        "created_at": info.creation_time.isoformat(),
        "labels": dict(info.labels),
        **dict(info.metadata),
    }
