from sqlalchemy import text


async def upgrade(engine):
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS fdn_marker (id INTEGER PRIMARY KEY)"))
        await conn.execute(text("INSERT INTO fdn_marker (id) VALUES (1) ON CONFLICT DO NOTHING"))
