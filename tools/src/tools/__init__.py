"""Developer and operator tooling: embedded stack, demo, CLI, test harness, bench, document export.

It may import the services; the services never import it."""
