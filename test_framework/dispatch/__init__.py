"""Dispatch: the acting side of a run. The dispatcher starts shards as the limiter admits them
and carries out the ledger's decisions; beside it the queue, work stealing, the slot policy,
the limiter, and the monitor that moves the limiter with the resource sampler's readings."""
