"""Every SurrealQL statement of the result backend, in one place.

Reads of whole records use the RPC ``select`` method instead (no SurrealQL at all).
Values only ever arrive as bound parameters (``$rid``, ``$doc``, ...): record ids are passed as
``RecordID`` values, never spelled into the text, so an id like ``x; DELETE task`` is just an id.
Each request is atomic (one statement, or one transaction for a chord part); none relies on
the order in which SurrealDB evaluates the assignments of one ``SET`` (SurrealDB 2 and 3
differ there).

Tables: ``task`` (one record per task id), ``group`` (saved GroupResults), ``chord`` (chord
completion), ``chord_part`` (which header tasks a chord counted), ``dedup`` (claims of the
framework's deduplication).
"""

from __future__ import annotations

#: Tables, indexes for cleanup. Run once per namespace/database; IF NOT EXISTS keeps it cheap.
SCHEMA = """
DEFINE TABLE IF NOT EXISTS task SCHEMALESS;
DEFINE TABLE IF NOT EXISTS `group` SCHEMALESS;
DEFINE TABLE IF NOT EXISTS chord SCHEMALESS;
DEFINE TABLE IF NOT EXISTS chord_part SCHEMALESS;
DEFINE TABLE IF NOT EXISTS dedup SCHEMALESS;
DEFINE INDEX IF NOT EXISTS task_updated_at ON task FIELDS updated_at;
DEFINE INDEX IF NOT EXISTS group_updated_at ON `group` FIELDS updated_at;
DEFINE INDEX IF NOT EXISTS chord_updated_at ON chord FIELDS updated_at;
DEFINE INDEX IF NOT EXISTS chord_part_updated_at ON chord_part FIELDS updated_at;
DEFINE INDEX IF NOT EXISTS dedup_expires_at ON dedup FIELDS expires_at;
"""

#: Store a task's state, unless it already succeeded (a late duplicate must not overwrite a
#: SUCCESS: Celery's rule, checked inside the one statement instead of read-then-write).
STORE_TASK = "UPSERT $rid CONTENT $doc WHERE status != 'SUCCESS' RETURN NONE"

#: Replace a record whatever it holds (groups).
PUT = "UPSERT $rid CONTENT $doc RETURN NONE"

DELETE = "DELETE $rid"

#: The records of many tasks at once (a group join's poll), in one statement; missing ones are
#: left out. ``id`` and ``updated_at`` are omitted (less to send and decode): rows are matched
#: by ``task_id``. ``$ids.*`` fetches the records before the SELECT sees them, which the
#: embedded engine does 10-15 % faster than ``FROM $ids``; a server that would hand back the
#: ids themselves there still selects the records they name.
TASKS = "SELECT * OMIT id, updated_at FROM $ids.*"

#: Celery's key-value ``incr``: one statement, returns the new value.
INCR = "UPSERT $rid SET counter += 1, updated_at = $now RETURN VALUE counter"

#: One header task of a chord has finished: one transaction, in one request.
#: ``chord_part:[group, index, task]`` records the task's state and value once (a redelivered
#: task or a retried call rewrites the same record and is not counted again); ``fired_by`` is
#: claimed by exactly one caller's ``$claim`` token, in the same transaction that completes
#: the count. The parts expected: the size ``set_chord_size`` stored (else ``$size``) plus the
#: tasks added later. Answers {n, expected, fired_by, parts}; ``parts`` (the header's results
#: in group order) only for the caller that fired. Each part costs the same whatever the size.
CHORD_PART = """
BEGIN TRANSACTION;
LET $seen = (UPSERT $part CONTENT $value RETURN BEFORE)[0];
LET $chord = (UPSERT $rid SET n += IF $seen == NONE THEN 1 ELSE 0 END, updated_at = $now
    RETURN AFTER)[0];
LET $size_known = $chord.size ?? $size ?? -1;
LET $expected = IF $size_known >= 0 THEN $size_known + ($chord.added ?? 0) ELSE -1 END;
UPDATE $rid SET fired_by = $claim
    WHERE fired_by == NONE AND $expected >= 0 AND n >= $expected RETURN NONE;
SELECT n, $expected AS expected, fired_by, nested ?? false AS nested,
    IF fired_by == $claim THEN (
        SELECT VALUE [task, state, value, typed, payload]
        FROM chord_part:[$group_id, NONE]..[$group_id, ..]
    ) ELSE NONE END AS parts
    FROM ONLY $rid;
COMMIT TRANSACTION;
"""

#: After the callback is sent (or failed): the part records are not needed anymore. Deletes up
#: to ``$limit`` of them and says how many, like ``CLEANUP_SLICES``.
CHORD_PARTS_DONE = """
LET $ids = SELECT VALUE id FROM chord_part:[$group_id, NONE]..[$group_id, ..] LIMIT $limit;
DELETE $ids;
RETURN array::len($ids);
"""

#: The number of header tasks, stored when the chord is applied.
CHORD_SIZE = "UPSERT $rid SET size = $size, updated_at = $now RETURN NONE"

#: Task.add_to_chord: one more header part to wait for.
CHORD_ADD = "UPSERT $rid SET added += 1, updated_at = $now RETURN NONE"

#: A chord is applied: a new run starts from nothing, even when a frozen chord reuses its group
#: id. ``nested``: the header has nested groups, so its saved group is joined for the callback.
CHORD_APPLY = """
UPSERT $rid CONTENT { nested: $nested, updated_at: $now } RETURN NONE;
DELETE chord_part:[$group_id, NONE]..[$group_id, ..];
"""

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

#: Expired dedup claims (on their ``expires_at`` index).
EXPIRED_CLAIMS = "DELETE dedup WHERE expires_at < time::now()"

#: ``cleanup()``: per table, the ids of records not updated since ``$cutoff``, walked on the
#: ``updated_at`` index (the lower bound keeps rows without ``updated_at``, written by the older
#: package, out of the range), ``$limit`` at a time. Every statement here and in
#: ``LEGACY_ROWS`` is checked to walk an index (tests/backends/test_results.py).
EXPIRED = tuple(
    f"SELECT VALUE id FROM {table} WHERE updated_at >= $epoch AND updated_at < $cutoff "
    "LIMIT $limit"
    for table in ("task", "`group`", "chord", "chord_part")
)

#: One slice of ``cleanup()``: delete up to ``$limit`` expired records of a table and say how
#: many (why slices: ``SurrealDBBackend._delete_in_slices``).
CLEANUP_SLICES = tuple(f"LET $ids = {expired}; DELETE $ids; RETURN array::len($ids);"
                       for expired in EXPIRED)


#: Rows written by surrealdb-celery-backend carry no ``updated_at``; cleanup reads their
#: string ``date_done`` / ``date_created`` and deletes the old ones by id.
LEGACY_ROWS = """
SELECT id, date_done FROM task WHERE updated_at == NONE;
SELECT id, date_done FROM `group` WHERE updated_at == NONE;
SELECT id, date_created AS date_done FROM chord WHERE updated_at == NONE;
"""

DELETE_MANY = "DELETE $rids"
