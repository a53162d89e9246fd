-- The model registry: every trained model, and which one is champion.
-- Models are only comparable on flows with the same features, so there is
-- one champion per feature set (packet captures, one kind of flow CSV...).

CREATE TABLE models (
    algorithm   text NOT NULL,
    version     text NOT NULL,
    run_id      uuid NOT NULL REFERENCES pipeline_runs (run_id),
    feature_set text NOT NULL,           -- sha256 head of the SILVER feature names it was fitted on
    model       jsonb NOT NULL,          -- the model file (bucket, key, version, sha256, size)
    manifest    jsonb NOT NULL,
    metrics     jsonb NOT NULL,          -- what the train stage measured (rows, fit time, memory, threshold)
    trained_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (algorithm, version)
);
CREATE INDEX models_trained_at ON models (trained_at DESC);

-- Every change of champion, newest last: a feature set's champion is its latest row.
CREATE TABLE champion_history (
    id                 bigserial PRIMARY KEY,
    feature_set        text NOT NULL,
    algorithm          text NOT NULL,
    version            text NOT NULL,
    action             text NOT NULL CHECK (action IN ('promote', 'manual', 'rollback')),
    run_id             uuid REFERENCES pipeline_runs (run_id),   -- the evaluation that promoted it
    previous_algorithm text,
    previous_version   text,
    reason             text NOT NULL,
    metrics            jsonb NOT NULL,   -- the evidence: both models' metrics on the same data
    actor              text NOT NULL,    -- a worker, or the user of `nadir promote` / `nadir rollback`
    at                 timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (algorithm, version) REFERENCES models (algorithm, version)
);
-- A run promotes at most once, whatever the redeliveries.
CREATE UNIQUE INDEX champion_history_run ON champion_history (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX champion_history_feature_set ON champion_history (feature_set, id DESC);

-- Analysts' verdicts on flagged flows: labels for later evaluations.
CREATE TABLE feedback (
    id           bigserial PRIMARY KEY,
    raw_version  text NOT NULL,          -- the SILVER partition's RAW version
    flow_id      bigint NOT NULL,
    run_id       uuid REFERENCES pipeline_runs (run_id),
    verdict      text NOT NULL CHECK (verdict IN ('true_positive', 'false_positive')),
    comment      text NOT NULL DEFAULT '',
    analyst      text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_flow ON feedback (raw_version, flow_id, id DESC);
