"""The registry API over ``puller.http``: reads, uploads, the token flow, endpoint failover,
credentials, retries, and the mapping of HTTP answers to pypull's errors."""
