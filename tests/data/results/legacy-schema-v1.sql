CREATE TABLE runs (
    id                  INTEGER PRIMARY KEY,
    header_sha256       TEXT NOT NULL UNIQUE,
    record_sha256       TEXT NOT NULL,
    record_bytes        INTEGER NOT NULL,
    run_dir             TEXT NOT NULL,
    model               TEXT NOT NULL,
    serial              TEXT NOT NULL,
    station             TEXT,
    operator            TEXT,
    started             TEXT,
    ended               TEXT,
    verdict             TEXT NOT NULL,
    complete            INTEGER NOT NULL,
    chain_intact        INTEGER NOT NULL,
    emulated            INTEGER,
    rig_version         TEXT,
    source_revision     TEXT,
    requirements_sha256 TEXT,
    not_run             TEXT NOT NULL,
    ingested            TEXT NOT NULL
);
CREATE INDEX runs_model ON runs (model, started);
CREATE TABLE measurements (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    requirement TEXT NOT NULL,
    clause      TEXT,
    name        TEXT NOT NULL,
    value       REAL,
    value_flag  TEXT CHECK (value_flag IN
                ('inf', '-inf', 'nan', 'not measured')),
    unit        TEXT,
    low         REAL,
    high        REAL,
    equals      REAL,
    verdict     TEXT NOT NULL,
    repeat      INTEGER,
    bindings    TEXT NOT NULL,
    note        TEXT,
    trace       TEXT
);
CREATE INDEX measurements_run ON measurements (run_id);
CREATE INDEX measurements_quantity ON measurements (requirement, name);
CREATE TABLE requirement_verdicts (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    requirement TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    note        TEXT,
    test        TEXT
);
CREATE INDEX requirement_verdicts_run ON requirement_verdicts (run_id);
