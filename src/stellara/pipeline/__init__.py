"""The path of one request: auth → route → attempt → account (DESIGN §4)."""
