-- Token buckets for Meta's limits, kept in the database so that several processes share
-- them: a business number's throughput, and each business-number-and-contact pair.
CREATE TABLE rate_buckets (
    key         TEXT PRIMARY KEY,
    tokens      DOUBLE PRECISION NOT NULL,
    -- Milliseconds since the Unix epoch of the last change to tokens.
    updated_ms  BIGINT NOT NULL
);
