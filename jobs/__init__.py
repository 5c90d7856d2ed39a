"""Ray entry points: one module per pipeline, each exposing ``run(cfg)`` and a thin Hydra main."""
import os

# A driver streams millions of rows through Arrow. Arrow's bundled allocator keeps freed pages for
# reuse, which made the driver's peak memory grow with the pool; the system allocator returns them
# (bench.scale --driver, BENCHMARKS.md). Read when Arrow first allocates; a user's own setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
