"""Shared state: where limits and quotas (later breakers, health and caches) keep what all
gateway processes must agree on. `memory` for one process, `redis` for many."""
