"""The bottom layer: the record schema, input readers, staging into shards, atomic writers and the
run directory. No Ray, no model: every other package imports this one, and it imports none of them."""
