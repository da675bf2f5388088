"""Property-based and schema-driven fuzz tests."""
