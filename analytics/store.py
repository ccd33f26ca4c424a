"""Persisting fitted models: a joblib file plus a JSON sidecar with training window, features and scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib

from aidc.errors import DataError


def save_model(model: Any, path: Path | str, metadata: dict[str, Any]) -> Path:
    """Write ``model`` to ``path`` (joblib) and ``metadata`` to ``path`` + ``.json``; returns the model path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, p)
    p.with_name(p.name + ".json").write_text(json.dumps(metadata, indent=2, default=str) + "\n", encoding="utf-8")
    return p


def load_model(path: Path | str) -> Any:
    """Read a model written by :func:`save_model` (only load files you wrote: joblib runs code from the file)."""
    p = Path(path)
    try:
        return joblib.load(p)
    except FileNotFoundError:
        raise DataError(f"{p}: no such model file") from None
    except (OSError, EOFError, ValueError, KeyError) as exc:
        raise DataError(f"{p}: not a model file written by aidc ({type(exc).__name__})") from None


def load_metadata(path: Path | str) -> dict[str, Any]:
    """The JSON sidecar of a saved model."""
    p = Path(path)
    side = p.with_name(p.name + ".json")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{side}: cannot read model metadata: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{side}: line {exc.lineno}: invalid JSON") from None
    if not isinstance(data, dict):
        raise DataError(f"{side}: expected a JSON object")
    return data
