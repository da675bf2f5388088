"""Inbound dialects: what clients send (other than the canonical OpenAI form) ⇄ canonical types.

One module per dialect; each is pure (typed structs in, typed structs out) so the HTTP layer
alone decodes bodies and writes SSE.
"""
