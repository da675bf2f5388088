"""The SQL store: virtual keys and usage records, through SQLAlchemy (SQLite or PostgreSQL)."""
