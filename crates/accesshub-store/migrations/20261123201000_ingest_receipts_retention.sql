-- Receipts answer a repeated delivery with its first answer; upstreams redeliver for hours or
-- days, not forever, so booking-ingest prunes receipts older than its retention
-- (ACCESSHUB_INGEST_RECEIPT_RETENTION). Receipts are appended in time order, so a BRIN index
-- finds the old ones at almost no cost per insert (a btree on created_at would add an index
-- insertion to every webhook).
CREATE INDEX ingest_receipts_created_brin ON ingest_receipts USING brin (created_at);
