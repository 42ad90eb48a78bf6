"""The durability spine: a plan's queue (Redis Streams), the persister that commits a batch and
acknowledges it, and the hub where waiting requests get their acks."""
