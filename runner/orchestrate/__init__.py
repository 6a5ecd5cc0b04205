"""Who runs which job, without torch: the file ledger (claims, leases, states), the job
states and exit codes, and the three executors (local, --workers N, Ray)."""
