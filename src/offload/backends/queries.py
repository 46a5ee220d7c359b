"""Every SurrealQL statement of the result backend, in one place.

Values only ever arrive as bound parameters (``$rid``, ``$doc``, ...): record ids are passed as
``RecordID`` values, never spelled into the text, so an id like ``x; DELETE task`` is just an id.
Each statement is atomic on its own; none relies on the order in which SurrealDB evaluates the
assignments of one ``SET`` (SurrealDB 2 and 3 differ there).

Tables: ``task`` (one record per task id), ``group`` (saved GroupResults), ``chord`` (chord
completion), ``dedup`` (claims of the framework's deduplication).
"""

from __future__ import annotations

#: Tables, indexes for cleanup. Run once per namespace/database; IF NOT EXISTS keeps it cheap.
SCHEMA = """
DEFINE TABLE IF NOT EXISTS task SCHEMALESS;
DEFINE TABLE IF NOT EXISTS `group` SCHEMALESS;
DEFINE TABLE IF NOT EXISTS chord SCHEMALESS;
DEFINE TABLE IF NOT EXISTS dedup SCHEMALESS;
DEFINE INDEX IF NOT EXISTS task_updated_at ON task FIELDS updated_at;
DEFINE INDEX IF NOT EXISTS group_updated_at ON `group` FIELDS updated_at;
DEFINE INDEX IF NOT EXISTS chord_updated_at ON chord FIELDS updated_at;
DEFINE INDEX IF NOT EXISTS dedup_expires_at ON dedup FIELDS expires_at;
"""

#: Store a task's state, unless it already succeeded (a late duplicate must not overwrite a
#: SUCCESS: Celery's rule, checked inside the one statement instead of read-then-write).
STORE_TASK = "UPSERT $rid CONTENT $doc WHERE status != 'SUCCESS' RETURN NONE"

#: Replace a record whatever it holds (groups).
PUT = "UPSERT $rid CONTENT $doc RETURN NONE"

GET = "SELECT * FROM $rid"

#: Many records in one round trip (group joins): missing ids are simply absent.
GET_MANY = "SELECT * FROM $rids"

DELETE = "DELETE $rid"

#: Celery's key-value ``incr``: one statement, returns the new value.
INCR = "UPSERT $rid SET counter += 1, updated_at = $now RETURN VALUE counter"

#: One header task of a chord has finished. ``parts`` is a set of task ids, so a redelivered
#: task or a retried call counts once; ``fired_by`` is claimed by exactly one caller's
#: ``$claim`` token, in the same statement that completes the set. The chord's size is the one
#: ``set_chord_size`` stored, else ``$size``. Returns {n, size, fired_by}.
CHORD_PART = """
UPSERT $rid SET
    parts = array::union(parts ?? [], [$part]),
    updated_at = $now,
    fired_by = IF fired_by == NONE AND (size ?? $size ?? -1) >= 0
        AND array::len(array::union(parts ?? [], [$part])) >= (size ?? $size ?? 0) + (added ?? 0)
        THEN $claim ELSE fired_by END
RETURN VALUE { n: array::len(parts), size: size ?? $size, fired_by: fired_by }
"""

#: The number of header tasks, stored when the chord is applied.
CHORD_SIZE = "UPSERT $rid SET size = $size, updated_at = $now RETURN NONE"

#: Task.add_to_chord: one more header part to wait for.
CHORD_ADD = "UPSERT $rid SET added += 1, updated_at = $now RETURN NONE"

#: Take the dedup claim if it is free, expired, or already ours (then refresh the TTL).
#: Returns the owner after the statement: ``$owner`` means the caller holds it.
CLAIM = """
UPSERT $rid SET
    owner = IF owner == NONE OR owner == $owner OR expires_at <= time::now()
        THEN $owner ELSE owner END,
    expires_at = IF owner == NONE OR owner == $owner OR expires_at <= time::now()
        THEN time::now() + <duration> $ttl ELSE expires_at END
RETURN VALUE owner
"""

#: Release a claim only if ``$owner`` holds it. Returns the deleted record (or nothing).
RELEASE = "DELETE $rid WHERE owner == $owner RETURN BEFORE"

#: Extend a claim ``$owner`` still holds (a retrying task keeps its claim).
REFRESH = """
UPDATE $rid SET expires_at = time::now() + <duration> $ttl
WHERE owner == $owner AND expires_at > time::now()
RETURN VALUE owner
"""

#: The current holder of an unexpired claim.
OWNER = "SELECT VALUE owner FROM $rid WHERE expires_at > time::now()"

#: Records of a table not updated since ``$cutoff`` (an index range scan on ``updated_at``;
#: the lower bound keeps rows without ``updated_at``, written by the older package, out).
EXPIRED_TASKS = "SELECT VALUE id FROM task WHERE updated_at >= $epoch AND updated_at < $cutoff"
EXPIRED_GROUPS = (
    "SELECT VALUE id FROM `group` WHERE updated_at >= $epoch AND updated_at < $cutoff"
)
EXPIRED_CHORDS = "SELECT VALUE id FROM chord WHERE updated_at >= $epoch AND updated_at < $cutoff"

#: Delete what is older than the cutoff (each table on its index), and expired claims.
CLEANUP = f"""
DELETE ({EXPIRED_TASKS});
DELETE ({EXPIRED_GROUPS});
DELETE ({EXPIRED_CHORDS});
DELETE dedup WHERE expires_at < time::now();
"""

#: Rows written by surrealdb-celery-backend carry no ``updated_at``; cleanup reads their
#: string ``date_done`` / ``date_created`` and deletes the old ones by id.
LEGACY_ROWS = """
SELECT id, date_done FROM task WHERE updated_at == NONE;
SELECT id, date_done FROM `group` WHERE updated_at == NONE;
SELECT id, date_created AS date_done FROM chord WHERE updated_at == NONE;
"""

DELETE_MANY = "DELETE $rids"
