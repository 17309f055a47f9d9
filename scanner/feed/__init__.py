"""Getting frames from venues: the shared connection loop, backoff, REST snapshots, collectors."""
