-- What the dashboard asks for most: the newest finished runs and the
-- evaluations over time.
CREATE INDEX pipeline_runs_finished ON pipeline_runs (status, finished_at DESC);
CREATE INDEX evaluations_finished_at ON evaluations (finished_at DESC);
