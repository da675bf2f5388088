"""How long a user's recent answers were, per public model: what a request that sets no
`max_tokens` is expected to use.

A request without an output ceiling could use up to the model's full output limit, but
reserving that would refuse every such request from a user with a small token window. Its
caller's recent answers predict it better than any constant; the settle corrects the guess to
the truth either way. So the history is kept in this process only (no state round trip: a
guess needs no agreement between processes), fed by the settles of requests a limit applied
to (the only ones whose estimate matters), and bounded: the `MAX_TRACKED` (user, model) pairs
settled most recently.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_TRACKED = 10_000
# The newest answer's weight in the moving average: about the last five answers count, so a
# user who switches from short answers to long ones is followed within a few requests.
NEWEST_WEIGHT = 0.3


class OutputHistory:
    """An exponentially weighted average of the completion tokens of each (user, public model)
    pair's answers; one per process (`Limiter.outputs`)."""

    def __init__(self, *, max_tracked: int = MAX_TRACKED) -> None:
        self._lengths: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._max_tracked = max_tracked

    def expected(self, user: str, model: str) -> int | None:
        """The tokens `user`'s next answer from `model` is expected to have; None when none of
        their answers from it was seen (recently enough to be kept)."""
        length = self._lengths.get((user, model))
        return None if length is None else round(length)

    def observe(self, user: str, model: str, completion_tokens: int) -> None:
        """`user` got an answer of `completion_tokens` from `model`."""
        key = (user, model)
        previous = self._lengths.pop(key, None)
        if previous is None:
            self._lengths[key] = float(completion_tokens)
        else:
            self._lengths[key] = previous + NEWEST_WEIGHT * (completion_tokens - previous)
        if len(self._lengths) > self._max_tracked:
            self._lengths.popitem(last=False)  # the pair settled longest ago
