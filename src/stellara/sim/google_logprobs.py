"""Log probabilities in the Gemini simulator: `responseLogprobs` / `logprobs` and `logprobsResult`.

Each answer piece is one decoding step. The chosen token's log probability is derived from the
piece, so answers repeat; the top candidates are the chosen token and less likely variants of
it, most likely first, as many as `logprobs` asks (at most 20, as Gemini allows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

MAX_TOP_LOGPROBS = 20


def logprobs_problem(response_logprobs: bool | None, top: int | None) -> str | None:
    """Gemini's message refusing this logprobs setting, or None when it is fine."""
    if top is None:
        return None
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        return (
            "* GenerateContentRequest.generation_config.logprobs: "
            f"must be in the range [0, {MAX_TOP_LOGPROBS}]."
        )
    if not response_logprobs:
        return (
            "* GenerateContentRequest.generation_config.logprobs: "
            "logprobs can only be set when response_logprobs is true."
        )
    return None


def logprobs_result(pieces: Sequence[str], top: int) -> dict[str, Any]:
    """The `logprobsResult` of a candidate for `pieces`, with `top` candidates per step."""
    chosen = [_candidate(piece, 0) for piece in pieces]
    result: dict[str, Any] = {
        "chosenCandidates": chosen,
        "logProbabilitySum": sum(c["logProbability"] for c in chosen),
    }
    if top:
        result["topCandidates"] = [
            {"candidates": [_candidate(piece, rank) for rank in range(top)]} for piece in pieces
        ]
    return result


def _candidate(piece: str, rank: int) -> dict[str, Any]:
    """The `rank`-th most likely token at the step that chose `piece` (rank 0 is `piece`)."""
    digest = hashlib.blake2b(piece.encode(), digest_size=4).digest()
    logprob = -int.from_bytes(digest[:2], "little") / 65536 - rank * 1.5
    token = piece if rank == 0 else f"{piece.strip() or piece}{rank}"
    token_id = int.from_bytes(digest, "little") % 256000 + rank
    return {"token": token, "tokenId": token_id, "logProbability": round(logprob, 6)}
