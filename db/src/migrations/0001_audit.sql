-- The audit trail: one row per run, one row per thing each stage produced.

CREATE TABLE pipeline_runs (
    run_id       uuid PRIMARY KEY,
    trigger      text NOT NULL,          -- the subject that started the run: minio.raw, pipeline.start, ...
    request      jsonb NOT NULL,         -- the message that started it
    status       text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    stage        text NOT NULL,          -- the last stage that took up the run
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    report       jsonb,                  -- the eval report artifact of a succeeded run
    error        text,
    error_stage  text
);
CREATE INDEX pipeline_runs_started_at ON pipeline_runs (started_at DESC);

CREATE TABLE stage_jobs (
    run_id              uuid NOT NULL REFERENCES pipeline_runs (run_id),
    stage               text NOT NULL CHECK (stage IN ('ingest', 'transform', 'train', 'eval')),
    input_version       text NOT NULL,
    status              text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    output_version      text NOT NULL,   -- fixed at the first attempt: retries overwrite, never duplicate
    attempts            integer NOT NULL,
    worker              text NOT NULL,
    request             jsonb NOT NULL,
    started_at          timestamptz NOT NULL DEFAULT now(),
    attempt_started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    next_subject        text,
    next_message        jsonb,
    published_at        timestamptz,     -- when JetStream stored next_message
    error               text,
    PRIMARY KEY (run_id, stage, input_version)
);

CREATE TABLE ingestions (
    id             bigserial PRIMARY KEY,
    run_id         uuid NOT NULL REFERENCES pipeline_runs (run_id),
    input_version  text NOT NULL,
    item           text NOT NULL,        -- the RAW object key
    status         text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL,
    inputs         jsonb NOT NULL,
    outputs        jsonb NOT NULL,
    parameters     jsonb NOT NULL,
    metrics        jsonb NOT NULL,
    worker         text NOT NULL,
    attempts       integer NOT NULL,
    error          text,
    UNIQUE (run_id, input_version, item)
);
CREATE INDEX ingestions_item ON ingestions (item);

CREATE TABLE transformations (LIKE ingestions INCLUDING ALL);
CREATE TABLE trainings (LIKE ingestions INCLUDING ALL);
CREATE TABLE evaluations (LIKE ingestions INCLUDING ALL);
ALTER TABLE transformations ADD FOREIGN KEY (run_id) REFERENCES pipeline_runs (run_id);
ALTER TABLE trainings ADD FOREIGN KEY (run_id) REFERENCES pipeline_runs (run_id);
ALTER TABLE evaluations ADD FOREIGN KEY (run_id) REFERENCES pipeline_runs (run_id);

COMMENT ON COLUMN transformations.item IS 'the SILVER partition (RAW version)';
COMMENT ON COLUMN trainings.item IS 'the algorithm';
COMMENT ON COLUMN evaluations.item IS 'the evaluation (one per run)';

CREATE TABLE rejected_messages (
    id               bigserial PRIMARY KEY,
    subject          text NOT NULL,
    stream_sequence  bigint NOT NULL,
    run_id           uuid,
    payload_excerpt  text NOT NULL,
    error            text NOT NULL,
    worker           text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subject, stream_sequence)
);
