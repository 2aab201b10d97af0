"""Dispatch, from an approved revision to the channels: `outbox` (which delivery rows an approval or a
retraction creates, and a person's retry), `dispatcher` (one worker per channel: claim, send through
the adapter, verify, reconcile rows past their lease; it owns all bookkeeping), `outcomes` (what each
row's outcome writes, in one transaction), `livecheck` (live items read back again on channels that can
take them down later), `ratelimit` (the client-side limits), `policy` (the lease and
the adapter call's deadline, the retry, read-back and store-outage backoff, how an outcome is worded),
`telemetry` (the counters of sends, read-backs, retries and intake files that /metrics shows). May
import the core's leaf modules, config, store and `channels` (the adapter contract); adapters never
reach back into it.
"""
