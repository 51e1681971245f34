"""Durable task records: SQLAlchemy tables (`models`), queries (`api`), alembic migrations."""
