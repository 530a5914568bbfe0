-- Browser ingest keys: the origins (newline-separated, e.g. https://app.example) from which a
-- key may ingest; NULL for a server key.
ALTER TABLE ingest_keys ADD COLUMN origins TEXT;
