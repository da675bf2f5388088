"""Wire schemas: the JSON each API dialect puts on the wire, as msgspec structs and codecs.

One module per dialect, holding both directions side by side: what a provider adapter sends and
receives (`providers/<name>/`) and what a client of that dialect sends the gateway
(`inbound/<dialect>.py`, `server/routes/`). The canonical, OpenAI-shaped types that every part of
the gateway speaks are not here but in `stellara.schema`; `openai.py` holds only what OpenAI's
wire adds to them (the error body).

A module here is pure types and codecs: no translation, no I/O, no canonical types. A new
dialect's schema goes here first (as `responses.py` holds OpenAI's Responses API), and a new
direction of an existing dialect reuses its module, as Gemini-native inbound reuses
`google.py`. Translators to and from the canonical types stay with their users: the adapter in
`providers/<name>/`, the inbound dialect in `inbound/`.
"""
