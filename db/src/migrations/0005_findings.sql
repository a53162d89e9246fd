-- Findings' triage and suppression rules (DESIGN.md, Findings). Both are
-- append-only: a change is a new row, so the history is the audit trail.

-- Each change of a finding's state; the newest row is its state.
CREATE TABLE finding_triage (
    id          bigserial PRIMARY KEY,
    run_id      uuid NOT NULL REFERENCES pipeline_runs (run_id),
    finding_id  text NOT NULL,
    state       text NOT NULL CHECK (state IN ('new', 'acknowledged', 'confirmed', 'resolved', 'false_positive')),
    note        text NOT NULL DEFAULT '',
    analyst     text NOT NULL,
    -- evidence flows this change labelled (feedback rows written with it)
    labelled    integer NOT NULL DEFAULT 0,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX finding_triage_finding ON finding_triage (run_id, finding_id, id DESC);

-- Each version of a rule; a rule's newest version is what it is now, and
-- `removed` ends it. The rules in force at a time are each rule's newest
-- version made by then, not removed and not expired.
CREATE SEQUENCE suppression_rule_ids;
CREATE TABLE suppression_rules (
    id          bigserial PRIMARY KEY,
    rule_id     bigint NOT NULL,
    version     integer NOT NULL,
    matcher     text NOT NULL CHECK (matcher IN ('cidr', 'pair', 'port', 'domain', 'server_name')),
    pattern     text NOT NULL,
    kind        text,
    owner       text NOT NULL,
    reason      text NOT NULL,
    expires_at  timestamptz,
    removed     boolean NOT NULL DEFAULT false,
    -- who made this version (the owner, or who removed it)
    changed_by  text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule_id, version)
);
