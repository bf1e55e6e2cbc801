"""Where the gateway's shared state lives: in this process (memory.py, the default) or in Redis / Valkey
(``gateway.redis_url``) so that several gateway instances enforce one set of budgets, rate limits and
breakers and share one exact cache. health.py: outages, failure modes, alerts."""
