"""Answer caches: exact (L1 in process, L2 in Redis) and semantic."""
