"""The path of one request: limits → cache → route → attempt → record."""
