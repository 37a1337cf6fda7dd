-- Administrators' sessions, shared by every proxy of the database so that any of them
-- serves the admin pages (issue 27). `key` is the SHA-256 (hex) of the session id that
-- the browser's cookie carries: the database never holds a usable id.
CREATE TABLE admin_sessions (
    key     TEXT PRIMARY KEY,
    admin   TEXT NOT NULL,
    csrf    TEXT NOT NULL,
    started BIGINT NOT NULL,
    last    BIGINT NOT NULL
);
CREATE INDEX admin_sessions_last ON admin_sessions (last);
