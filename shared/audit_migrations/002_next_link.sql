-- Where the next entry joins the chain, read under the lock every append takes: one round trip
-- for what was three (lock, read the head, normalise the detail). Each statement of a VOLATILE
-- function takes a fresh snapshot, so the head read after the lock is granted sees the entry a
-- concurrent append committed while this one waited.
CREATE FUNCTION audit.next_link(
    lock_key text,
    detail text,
    OUT isolation text,
    OUT stored_detail text,
    OUT prev_seq bigint,
    OUT prev_hash text
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    isolation := current_setting('transaction_isolation');
    PERFORM pg_advisory_xact_lock(hashtext(lock_key));
    -- Through jsonb, as it will be stored: jsonb rewrites numbers (1e+20 comes back as
    -- 100000000000000000000), and the hash must be of what verify will read back.
    stored_detail := detail::jsonb::text;
    SELECT last.seq, last.hash INTO prev_seq, prev_hash
        FROM audit.log AS last ORDER BY last.seq DESC LIMIT 1;
END
$$;
