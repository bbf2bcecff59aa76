"""Transport helpers shared by provider plugins: SSE/NDJSON readers and upstream error mapping."""
