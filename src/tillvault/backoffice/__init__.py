"""The fleet back office: terminals report their storage health; a dashboard shows every
terminal's storage, pressure and runway before it becomes a problem (PostgreSQL, FastAPI)."""
