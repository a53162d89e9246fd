-- Delivery that survives outages (issue 14): leases instead of advisory
-- locks, a retry budget in time, an outbox for dead letters, and the
-- artifacts each attempt wrote, so a superseded attempt's are removed.

ALTER TABLE stage_jobs DROP CONSTRAINT stage_jobs_status_check;
ALTER TABLE stage_jobs ADD CONSTRAINT stage_jobs_status_check
    CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled'));

ALTER TABLE stage_jobs
    -- The attempt `attempts` owns the job until then; NULL once it handed
    -- the job back (SIGTERM, a retry). An expired lease means its worker died.
    ADD COLUMN lease_until     timestamptz,
    -- The first transient error or worker death: the retry budget runs from here.
    ADD COLUMN first_error_at  timestamptz,
    ADD COLUMN retries         integer NOT NULL DEFAULT 0,
    ADD COLUMN worker_deaths   integer NOT NULL DEFAULT 0,
    -- Why a failed job failed: its input ('rejected') or its budget ran out ('transient').
    ADD COLUMN failure         text CHECK (failure IN ('rejected', 'transient')),
    -- The outbox's second half: the dead letter of a failed job, kept until
    -- JetStream has stored it.
    ADD COLUMN dead_letter        jsonb,
    ADD COLUMN dead_published_at  timestamptz;

ALTER TABLE pipeline_runs
    ADD COLUMN failure text CHECK (failure IN ('rejected', 'transient'));

-- Every object an attempt wrote under its own version. The committed
-- attempt's are the job's artifacts; every other attempt's are removed.
CREATE TABLE stage_artifacts (
    bucket         text NOT NULL,
    key            text NOT NULL,
    run_id         uuid NOT NULL,
    stage          text NOT NULL,
    input_version  text NOT NULL,
    attempt        integer NOT NULL,
    written_at     timestamptz NOT NULL DEFAULT now(),
    removed_at     timestamptz,      -- deleted once the job ended
    swept_at       timestamptz,      -- deleted again later, after any write still in flight
    PRIMARY KEY (bucket, key),
    FOREIGN KEY (run_id, stage, input_version) REFERENCES stage_jobs (run_id, stage, input_version)
);
CREATE INDEX stage_artifacts_job ON stage_artifacts (run_id, stage, input_version);
CREATE INDEX stage_artifacts_pending ON stage_artifacts (written_at) WHERE swept_at IS NULL;
CREATE INDEX stage_jobs_open ON stage_jobs (stage, status) WHERE status = 'running' OR published_at IS NULL OR dead_published_at IS NULL;
