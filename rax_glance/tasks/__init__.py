"""Cloud Images tasks (`/v2/tasks` import and export) for stock Glance 33.

`filter` serves the API as a paste filter after `context`; `db` keeps the task records in SQL;
`executor` runs the TaskFlow flows of `flows` in the background.
"""
